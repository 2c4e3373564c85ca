"""processing/image.py against transformers 4.57.6: load_image for every input form and mode, and
ImageProcessor pixel_values equal to transformers' image processors' (within 1e-5) for every processor
class the vision families use, with legacy and modern preprocessor_config.json forms."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch

from fixtures.images import MODES, SIZES, make_image

PIL = pytest.importorskip("PIL.Image")

from inferline.processing.image import PROCESSOR_DEFAULTS, ImageProcessor, is_image_config, load_image  # noqa: E402

# LayoutLMv3's OCR (apply_ocr) is the document-QA pipeline's step (processing/ocr.py), compared in its tests.
NO_OCR = {"LayoutLMv3ImageProcessor": {"apply_ocr": False}}
CONFIGS = [{"image_processor_type": name, **NO_OCR.get(name, {})} for name in PROCESSOR_DEFAULTS] + [
    # legacy forms the default checkpoints still ship
    {"feature_extractor_type": "DetrFeatureExtractor", "size": 320, "max_size": 500, "do_normalize": True},
    {"feature_extractor_type": "DetrFeatureExtractor", "size": 96},  # int size: longest edge defaults to 1333
    {"feature_extractor_type": "ViTFeatureExtractor", "size": 32, "resample": 2},
    {"feature_extractor_type": "CLIPFeatureExtractor", "size": 40, "crop_size": 32},
    {"feature_extractor_type": "DeiTFeatureExtractor", "size": 40, "crop_size": 36, "resample": 3},
    {"image_processor_type": "DetrImageProcessor", "pad_and_return_pixel_mask": True,
     "size": {"shortest_edge": 64, "longest_edge": 100}},
    # resize rules
    {"image_processor_type": "ConvNextImageProcessor", "size": 40, "crop_pct": 0.9},
    {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 384}},  # ≥ 384: warp, no crop
    {"image_processor_type": "DPTImageProcessor", "keep_aspect_ratio": True, "ensure_multiple_of": 14,
     "size": {"height": 70, "width": 70}},
    {"image_processor_type": "DPTImageProcessor", "do_pad": True, "size_divisor": 32, "do_resize": False},
    {"image_processor_type": "YolosImageProcessor", "size": {"shortest_edge": 64, "longest_edge": 120}},
    {"image_processor_type": "DetrImageProcessor", "size": {"max_height": 50, "max_width": 70}},
    {"image_processor_type": "DetrImageProcessor", "size": {"height": 33, "width": 47}},
    {"image_processor_type": "OwlViTImageProcessor", "do_center_crop": True, "size": 48, "crop_size": 40},
    {"image_processor_type": "ViTImageProcessor", "size": {"height": 30, "width": 20}, "resample": 0},
    {"image_processor_type": "ViTImageProcessor", "resample": 1, "do_normalize": False, "size": 28},
    {"image_processor_type": "SiglipImageProcessor", "do_rescale": False, "size": {"height": 16, "width": 16}},
    {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 30},
     "crop_size": {"height": 40, "width": 44}},
    # nvidia/segformer-b0-finetuned-ade-512-512's form: an int size, the legacy reduce_labels (labels only)
    {"feature_extractor_type": "SegformerFeatureExtractor", "reduce_labels": True, "resample": 2, "size": 48},
    {"image_processor_type": "SegformerImageProcessor", "do_reduce_labels": True, "size": {"height": 40, "width": 56}},
    # ViLT: shortest edge, longest capped at 1333/800 of it, cut to multiples of size_divisor; pixel_mask
    {"feature_extractor_type": "ViltFeatureExtractor", "size": 384, "size_divisor": 32, "resample": 3,
     "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},  # dandelin/vilt-b32-finetuned-vqa's form
    {"image_processor_type": "ViltImageProcessor", "size": {"shortest_edge": 40}, "size_divisor": 8},
    {"image_processor_type": "ViltImageProcessor", "size": 30, "size_divisor": 1, "do_pad": False},
    {"image_processor_type": "ViltImageProcessor", "size": 36, "pad_and_return_pixel_mask": False},
]


def _theirs(config, tmp_path):
    from transformers import AutoImageProcessor

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    return AutoImageProcessor.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: json.dumps(c, sort_keys=True)[:90])
def test_pixel_values_match_transformers(config, tmp_path):
    from transformers.image_utils import load_image as their_load

    theirs = _theirs(config, tmp_path)
    ours = ImageProcessor.from_pretrained(tmp_path)
    for (w, h), mode in zip(SIZES, ["RGB", "RGBA", "P", "L", "I;16"]):
        image = make_image(w, h, mode)
        try:
            expected = theirs(images=[their_load(image)], return_tensors="pt")
        except ValueError as error:  # transformers fails inside PIL where the output size rounds to 0 pixels
            assert "must be > 0" in str(error)
            with pytest.raises(ValueError, match="aspect ratio is too extreme"):
                ours(load_image(image))
            continue
        got = ours(load_image(image))
        assert set(got) == set(expected.keys()), (set(got), set(expected.keys()))
        for key in expected:
            assert got[key].shape == expected[key].shape, (key, got[key].shape, expected[key].shape)
            assert got[key].dtype == expected[key].dtype, (key, got[key].dtype, expected[key].dtype)
            torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["DetrImageProcessor", "YolosImageProcessor", "ViltImageProcessor"])
def test_batch_padding_matches_transformers(name, tmp_path):
    """Several sizes in one call: padded bottom/right to the largest, with DETR's (and ViLT's) pixel_mask."""
    config = {"image_processor_type": name, "size": {"shortest_edge": 40, "longest_edge": 90}}
    if name == "ViltImageProcessor":  # its longest edge follows from the shortest
        config = {"image_processor_type": name, "size": {"shortest_edge": 40}, "size_divisor": 8}
    theirs, images = _theirs(config, tmp_path), [make_image(*s) for s in SIZES[:4]]
    expected = theirs(images=images, return_tensors="pt")
    got = ImageProcessor.from_pretrained(tmp_path)(images)
    assert set(got) == set(expected.keys())
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=0)


def test_defaults_table_matches_transformers():
    """PROCESSOR_DEFAULTS holds what each transformers class uses when its JSON leaves a key out."""
    import transformers

    for name in PROCESSOR_DEFAULTS:
        theirs = getattr(transformers, name)().to_dict()
        ours = ImageProcessor.from_dict({"image_processor_type": name})
        for key in ("size", "resample", "image_mean", "image_std", "do_center_crop", "crop_size", "crop_pct"):
            if key in theirs:
                value = theirs[key]
                assert getattr(ours, key) == (int(value) if key == "resample" else value), (name, key)


@pytest.mark.parametrize("mode", MODES)
def test_load_image_modes_match_transformers(mode):
    from transformers.image_utils import load_image as their_load

    image = make_image(40, 30, mode)
    ours, theirs = load_image(image), their_load(image)
    assert ours.mode == "RGB" and ours.size == theirs.size
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_load_image_input_forms(tmp_path):
    image = make_image(33, 21)
    expected = np.asarray(image)
    path = tmp_path / "a.png"
    image.save(path)
    png = path.read_bytes()
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    pixels = np.array(image)  # writable, so torch.from_numpy does not warn
    forms = [image, str(path), path, png, bytearray(png), data_uri, base64.b64encode(png).decode(), pixels,
             np.moveaxis(pixels, -1, 0), torch.from_numpy(pixels), torch.from_numpy(pixels).permute(2, 0, 1),
             pixels.astype(np.float32) / 255.0 + 0.0001 * 0]
    for form in forms[:-1]:
        np.testing.assert_array_equal(np.asarray(load_image(form)), expected, err_msg=type(form).__name__)
    gray = np.asarray(load_image(pixels[..., 0]))
    assert gray.shape == (21, 33, 3) and (gray[..., 0] == pixels[..., 0]).all()
    assert [im.size for im in load_image([image, str(path)])] == [(33, 21), (33, 21)]


def test_load_image_applies_exif_orientation():
    import PIL.Image

    image = make_image(40, 20)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert load_image(buffer.getvalue()).size == (20, 40)


@pytest.mark.parametrize("bad, error, words", [
    ("/no/such/file.png", FileNotFoundError, "/no/such/file.png"),
    (b"not an image at all", ValueError, "Could not read an image"),
    ("data:image/png;base64,@@@@", ValueError, "base64"),
    (12345, TypeError, "int"),
    (np.zeros((0, 5, 3), np.uint8), ValueError, "no pixels"),
    (np.zeros((6, 5, 7), np.uint8), ValueError, "channels"),
    (np.full((4, 5, 3), 300.0), ValueError, "[0, 255]"),
    ("http://127.0.0.1:9/none.png", OSError, "127.0.0.1:9"),
])
def test_load_image_errors(bad, error, words):
    with pytest.raises(error, match=None) as info:
        load_image(bad, timeout=2)
    assert words in str(info.value)


def test_zero_pixel_pil_image():
    import PIL.Image

    with pytest.raises(ValueError, match="no pixels"):
        load_image(PIL.Image.new("RGB", (0, 4)))


def test_unknown_processor_and_config_kinds():
    with pytest.raises(ValueError, match="Unsupported image processor 'FooImageProcessor'"):
        ImageProcessor.from_dict({"image_processor_type": "FooImageProcessor"})
    assert is_image_config({"image_processor_type": "ViTImageProcessor"})
    assert is_image_config({"feature_extractor_type": "DetrFeatureExtractor", "size": 800})
    assert not is_image_config({"feature_extractor_type": "WhisperFeatureExtractor", "sampling_rate": 16000})
    with pytest.raises(TypeError, match="do_resise"):
        ImageProcessor.from_dict({"image_processor_type": "ViTImageProcessor"})(make_image(), do_resise=False)
