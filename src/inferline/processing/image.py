"""Image preprocessing: one `ImageProcessor` built from preprocessor_config.json, matching transformers
4.57.6's (slow, PIL-based) image processors.

The processor's steps run in transformers' order — convert to RGB, resize (with PIL, in uint8, as
transformers does), center crop, rescale + normalize (fused, float32), pad — and which resize rule
applies follows from the keys of `size` (height+width, shortest_edge, shortest+longest edge, ...) plus
`crop_pct` / `keep_aspect_ratio`. What a processor class leaves out of its JSON takes that class's
defaults from `PROCESSOR_DEFAULTS` (a table, keyed by the class name the checkpoint declares).

`load_image` (any input form → RGB PIL image) lives in image_input.py and is importable from here too.
Pillow is the `vision` extra: `pip install "inferline[vision]"`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .image_input import _from_array, _pil, load_image  # noqa: F401  (load_image: part of this module's API)
from .loading import PREPROCESSOR_FILE

IMAGENET_STANDARD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
IMAGENET_DEFAULT = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
OPENAI_CLIP = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
BILINEAR, BICUBIC = 2, 3


# ----- the image processor -----
@dataclass(frozen=True)
class _Defaults:
    size: dict
    resample: int
    mean_std: tuple
    square: bool = True  # an int `size` means height = width (else: the shortest edge)
    do_center_crop: bool = False
    crop_size: dict | None = None
    crop_pct: float | None = None
    do_convert_rgb: bool | None = None
    do_pad: bool = False
    pixel_mask: bool = False  # padding also returns pixel_mask (DETR; YOLOS pads without one)
    size_multiple: int | None = None  # shortest/longest-edge sizes cut down to a multiple (YOLOS: 16)
    max_size: int | None = None  # default longest edge for an int `size` (DETR's legacy max_size)
    # ViLT: the longest edge is capped at int(ratio * shortest edge), and the JSON's `size_divisor` (default:
    # size_multiple) cuts the resized size down to a multiple instead of padding up to one (DPT)
    longest_edge_ratio: float | None = None


_HW224, _HW256 = {"height": 224, "width": 224}, {"height": 256, "width": 256}
PROCESSOR_DEFAULTS = {
    "ViTImageProcessor": _Defaults(_HW224, BILINEAR, IMAGENET_STANDARD),
    "DeiTImageProcessor": _Defaults(_HW256, BICUBIC, IMAGENET_STANDARD, do_center_crop=True, crop_size=_HW224),
    "BeitImageProcessor": _Defaults(_HW256, BICUBIC, IMAGENET_STANDARD, do_center_crop=True, crop_size=_HW224),
    "ConvNextImageProcessor": _Defaults({"shortest_edge": 384}, BILINEAR, IMAGENET_STANDARD, square=False,
                                        crop_pct=224 / 256),
    "BitImageProcessor": _Defaults({"shortest_edge": 224}, BICUBIC, OPENAI_CLIP, square=False, do_center_crop=True,
                                   crop_size=_HW224, do_convert_rgb=True),
    "CLIPImageProcessor": _Defaults({"shortest_edge": 224}, BICUBIC, OPENAI_CLIP, square=False, do_center_crop=True,
                                    crop_size=_HW224, do_convert_rgb=True),
    "SiglipImageProcessor": _Defaults(_HW224, BICUBIC, IMAGENET_STANDARD),
    "BlipImageProcessor": _Defaults({"height": 384, "width": 384}, BICUBIC, OPENAI_CLIP, do_convert_rgb=True),
    "SegformerImageProcessor": _Defaults({"height": 512, "width": 512}, BILINEAR, IMAGENET_DEFAULT),
    "DPTImageProcessor": _Defaults({"height": 384, "width": 384}, BICUBIC, IMAGENET_STANDARD),
    "OwlViTImageProcessor": _Defaults({"height": 768, "width": 768}, BICUBIC, OPENAI_CLIP,
                                      crop_size={"height": 768, "width": 768}),
    "DetrImageProcessor": _Defaults({"shortest_edge": 800, "longest_edge": 1333}, BILINEAR, IMAGENET_DEFAULT,
                                    square=False, do_pad=True, pixel_mask=True, max_size=1333),
    # OCR settings (apply_ocr, ocr_lang, tesseract_config) are the document-QA pipeline's to read from `raw`
    "LayoutLMv3ImageProcessor": _Defaults(_HW224, BILINEAR, IMAGENET_STANDARD),
    "YolosImageProcessor": _Defaults({"shortest_edge": 800, "longest_edge": 1333}, BILINEAR, IMAGENET_DEFAULT,
                                     square=False, do_pad=True, size_multiple=16, max_size=1333),
    "ViltImageProcessor": _Defaults({"shortest_edge": 384}, BICUBIC, IMAGENET_STANDARD, square=False, do_pad=True,
                                    pixel_mask=True, size_multiple=32, longest_edge_ratio=1333 / 800),
}
# A config.json model_type → its processor class, for preprocessor configs that name none (transformers'
# IMAGE_PROCESSOR_MAPPING, for the families inferline implements).
MODEL_TYPE_PROCESSORS = {
    "vit": "ViTImageProcessor", "swin": "ViTImageProcessor", "deit": "DeiTImageProcessor",
    "beit": "BeitImageProcessor", "convnext": "ConvNextImageProcessor", "resnet": "ConvNextImageProcessor",
    "dinov2": "BitImageProcessor", "clip": "CLIPImageProcessor", "siglip": "SiglipImageProcessor",
    "blip": "BlipImageProcessor",
    "segformer": "SegformerImageProcessor", "dpt": "DPTImageProcessor", "depth_anything": "DPTImageProcessor",
    "owlvit": "OwlViTImageProcessor", "detr": "DetrImageProcessor", "yolos": "YolosImageProcessor",
    "layoutlmv3": "LayoutLMv3ImageProcessor",
    "vilt": "ViltImageProcessor",
}
_SIZE_KEYS = ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"}, {"longest_edge"},
              {"max_height", "max_width"})


def size_dict(size, square: bool, max_size: int | None = None, name: str = "size") -> dict:
    """transformers' get_size_dict: an int, a (height, width) pair or a dict → a dict of one accepted form."""
    if isinstance(size, dict):
        out = {k: int(v) for k, v in size.items() if v is not None}
    elif isinstance(size, int) and not isinstance(size, bool):
        out = {"height": size, "width": size} if square else \
            {"shortest_edge": size, **({"longest_edge": max_size} if max_size is not None else {})}
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        out = {"height": int(size[0]), "width": int(size[1])}
    else:
        raise ValueError(f"`{name}` must be an int, a (height, width) pair or a dict; got {size!r}.")
    if set(out) not in _SIZE_KEYS:
        raise ValueError(f"`{name}` must have one of the key sets {[sorted(k) for k in _SIZE_KEYS]}; got {size!r}.")
    return out


@dataclass
class ImageProcessor:
    """preprocessor_config.json → pixel_values (and pixel_mask) equal to transformers' slow image processors'."""

    processor_type: str = "ViTImageProcessor"
    do_resize: bool = True
    size: dict = field(default_factory=lambda: dict(_HW224))
    resample: int = BILINEAR
    do_center_crop: bool = False
    crop_size: dict | None = None
    crop_pct: float | None = None
    keep_aspect_ratio: bool = False
    ensure_multiple_of: int = 1
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: list = field(default_factory=lambda: list(IMAGENET_STANDARD[0]))
    image_std: list = field(default_factory=lambda: list(IMAGENET_STANDARD[1]))
    do_convert_rgb: bool | None = None
    do_pad: bool = False
    size_divisor: int | None = None  # DPT: pad each side to a multiple of it
    pad_size: dict | None = None  # DETR/YOLOS: pad to this size instead of the batch's largest
    pixel_mask: bool = False
    size_multiple: int | None = None
    longest_edge_ratio: float | None = None  # ViLT's longest-edge cap, as a multiple of the shortest edge
    raw: dict = field(default_factory=dict, repr=False)

    # ----- construction -----
    @classmethod
    def from_dict(cls, config: dict, model_type: str | None = None) -> "ImageProcessor":
        """A preprocessor_config.json dict (modern or legacy keys) → processor; unknown classes are refused."""
        name = config.get("image_processor_type") or config.get("feature_extractor_type") or \
            MODEL_TYPE_PROCESSORS.get(model_type or "")
        name = (name or "").replace("FeatureExtractor", "ImageProcessor").removesuffix("Fast")
        defaults = PROCESSOR_DEFAULTS.get(name)
        if defaults is None:
            raise ValueError(f"Unsupported image processor {name or '(none named)'!r}; inferline implements: "
                             f"{', '.join(PROCESSOR_DEFAULTS)}.")
        c = dict(config)
        max_size = c.get("max_size", defaults.max_size if not isinstance(c.get("size"), dict) else None)
        do_pad = c.get("pad_and_return_pixel_mask", c.get("do_pad", defaults.do_pad))  # DETR's legacy key
        if defaults.do_pad and do_pad is None:
            do_pad = True
        mean, std = defaults.mean_std
        crop_size = c.get("crop_size", defaults.crop_size)
        crop_pct = c.get("crop_pct") if c.get("crop_pct") is not None else defaults.crop_pct
        divides = defaults.longest_edge_ratio is not None  # ViLT: size_divisor is a resize multiple
        size_multiple = c.get("size_divisor", defaults.size_multiple) if divides else defaults.size_multiple
        return cls(
            processor_type=name, do_resize=c.get("do_resize", True),
            size=size_dict(c.get("size") if c.get("size") is not None else defaults.size, defaults.square,
                           max_size if defaults.max_size else None),
            resample=int(c.get("resample", defaults.resample)),
            do_center_crop=bool(c.get("do_center_crop", defaults.do_center_crop)),
            crop_size=size_dict(crop_size, True, name="crop_size") if crop_size is not None else None,
            crop_pct=crop_pct, keep_aspect_ratio=bool(c.get("keep_aspect_ratio", False)),
            ensure_multiple_of=int(c.get("ensure_multiple_of") or 1),
            do_rescale=c.get("do_rescale", True), rescale_factor=float(c.get("rescale_factor", 1 / 255)),
            do_normalize=c.get("do_normalize", True),
            image_mean=_channels(c.get("image_mean", mean)), image_std=_channels(c.get("image_std", std)),
            do_convert_rgb=c.get("do_convert_rgb", defaults.do_convert_rgb), do_pad=bool(do_pad),
            size_divisor=None if divides else c.get("size_divisor"), pad_size=c.get("pad_size"),
            pixel_mask=defaults.pixel_mask, size_multiple=size_multiple,
            longest_edge_ratio=defaults.longest_edge_ratio, raw=dict(config))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, model_type: str | None = None) -> "ImageProcessor":
        path = Path(folder) / PREPROCESSOR_FILE
        if not path.is_file():
            raise OSError(f"{str(folder)!r} has no {PREPROCESSOR_FILE}.")
        return cls.from_dict(json.loads(path.read_text()), model_type)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PREPROCESSOR_FILE).write_text(json.dumps(self.raw or {"image_processor_type": self.processor_type},
                                                              indent=2) + "\n")

    def with_options(self, **options) -> "ImageProcessor":
        """A copy with call-time overrides (image_processor_kwargs such as do_resize=False or size=...)."""
        known = {f.name for f in dataclasses.fields(self)} - {"raw", "processor_type"}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"Unknown image processor option(s) {sorted(unknown)}; accepted: {sorted(known)}.")
        if "size" in options:
            options["size"] = size_dict(options["size"], PROCESSOR_DEFAULTS[self.processor_type].square)
        if "crop_size" in options and options["crop_size"] is not None:
            options["crop_size"] = size_dict(options["crop_size"], True, name="crop_size")
        return dataclasses.replace(self, **options)

    # ----- processing -----
    def __call__(self, images, return_tensors: str | None = "pt", **options) -> dict[str, torch.Tensor]:
        """One image or a list → {"pixel_values": (B, 3, H, W)} (+ "pixel_mask" (B, H, W) where it pads)."""
        proc = self.with_options(**options) if options else self
        items = [proc.preprocess(image) for image in (images if isinstance(images, (list, tuple)) else [images])]
        return proc.pad_batch(items)

    def preprocess(self, image) -> dict[str, torch.Tensor]:
        """One image → {"pixel_values": (3, H, W) float32} (+ "pixel_mask" (H, W) int64 for DETR-style padding)."""
        PIL = _pil()
        if not isinstance(image, PIL.Image.Image):
            image = _from_array(image) if isinstance(image, (np.ndarray, torch.Tensor)) else load_image(image)
        if self.do_convert_rgb and image.mode != "RGB":
            image = image.convert("RGB")
        if self.do_resize:
            image = self._resize(image)
        pixels = np.asarray(image)  # (H, W[, C]) uint8
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        if self.do_resize and self.crop_pct is not None and set(self.size) == {"shortest_edge"} \
                and self.size["shortest_edge"] < 384:  # ConvNeXt's resize ends with a square crop
            pixels = center_crop(pixels, self.size["shortest_edge"], self.size["shortest_edge"])
        if self.do_center_crop and self.crop_size is not None:
            pixels = center_crop(pixels, self.crop_size["height"], self.crop_size["width"])
        values = self._rescale_normalize(pixels)
        if self.size_divisor and self.do_pad:
            values = _pad_to_multiple(values, self.size_divisor)
        out = {"pixel_values": values}
        if self.do_pad and self.pixel_mask:
            out["pixel_mask"] = torch.from_numpy(np.ones(values.shape[-2:], dtype=np.int64))  # numpy: no thread pool
        return out

    def pad_batch(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Stack preprocessed images; DETR/YOLOS pad bottom/right to the largest (or `pad_size`), with pixel_mask."""
        shapes = {tuple(item["pixel_values"].shape) for item in items}
        if self.do_pad and not self.size_divisor and (len(shapes) > 1 or self.pad_size):
            height = self.pad_size["height"] if self.pad_size else max(s[1] for s in shapes)
            width = self.pad_size["width"] if self.pad_size else max(s[2] for s in shapes)
            values = torch.zeros(len(items), items[0]["pixel_values"].shape[0], height, width)
            mask = torch.zeros(len(items), height, width, dtype=torch.long)
            for row, item in enumerate(items):
                _, h, w = item["pixel_values"].shape
                values[row, :, :h, :w] = item["pixel_values"]
                mask[row, :h, :w] = 1
            return {"pixel_values": values, **({"pixel_mask": mask} if self.pixel_mask else {})}
        if len(shapes) > 1:
            raise ValueError(f"Images of different processed sizes {sorted(shapes)} cannot be stacked without "
                             f"padding; process them one by one.")
        return {key: torch.from_numpy(np.stack([item[key].numpy() for item in items])) for key in items[0]}

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) the resize step gives an image of this size."""
        size = self.size
        if "height" in size:
            if self.keep_aspect_ratio or self.ensure_multiple_of != 1:
                return _dpt_size(height, width, size["height"], size["width"], self.keep_aspect_ratio,
                                 self.ensure_multiple_of)
            return size["height"], size["width"]
        if set(size) == {"shortest_edge"}:
            edge = size["shortest_edge"]
            if self.longest_edge_ratio is not None:
                return _capped_size(height, width, edge, int(self.longest_edge_ratio * edge), self.size_multiple or 1)
            if self.crop_pct is not None:  # ConvNeXt: shortest edge to edge / crop_pct, then crop; ≥ 384 warps
                return _short_edge_size(height, width, int(edge / self.crop_pct)) if edge < 384 else (edge, edge)
            return _short_edge_size(height, width, edge)
        if "shortest_edge" in size:
            return _aspect_size(height, width, size["shortest_edge"], size.get("longest_edge"), self.size_multiple)
        if "max_height" in size:
            scale = min(size["max_height"] / height, size["max_width"] / width)
            return int(height * scale), int(width * scale)
        raise ValueError(f"`size` {size!r} gives no resize rule for {self.processor_type}.")

    def _resize(self, image):
        height, width = self.output_size(image.height, image.width)
        if height <= 0 or width <= 0:
            raise ValueError(f"A {image.width}x{image.height} image resized by {self.processor_type} (size "
                             f"{self.size}) would be {width}x{height} pixels: its aspect ratio is too extreme.")
        return image.resize((width, height), resample=self.resample)

    def _rescale_normalize(self, pixels: np.ndarray) -> torch.Tensor:
        channels = pixels.shape[-1]
        scale = torch.full((channels,), self.rescale_factor if self.do_rescale else 1.0, dtype=torch.float64)
        shift = torch.zeros(channels, dtype=torch.float64)
        if self.do_normalize:
            mean, std = (torch.tensor(_match(v, channels, n), dtype=torch.float64)
                         for v, n in ((self.image_mean, "image_mean"), (self.image_std, "image_std")))
            scale, shift = scale / std, -mean / std
        # numpy, single-threaded: for one image torch's thread pool costs more than the arithmetic
        out = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32)  # (C, H, W), moved as uint8
        out *= scale.float().numpy()[:, None, None]
        out += shift.float().numpy()[:, None, None]
        return torch.from_numpy(out)


def _channels(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [float(value)] * 3


def _match(values: list, channels: int, name: str) -> list:
    if len(values) != channels:
        raise ValueError(f"`{name}` has {len(values)} values but the image has {channels} channels.")
    return values


def _short_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """transformers' get_resize_output_image_size(default_to_square=False): shortest edge → edge."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (new_long, edge) if width <= height else (edge, new_long)


def _capped_size(height: int, width: int, shorter: int, longer: int, multiple: int) -> tuple[int, int]:
    """ViLT's rule: shortest edge → `shorter`, scaled down again if the longest passes `longer`, rounded, then
    cut down to a multiple of `multiple`."""
    scale = shorter / min(height, width)
    new_h, new_w = (shorter, scale * width) if height < width else (scale * height, shorter)
    if max(new_h, new_w) > longer:
        scale = longer / max(new_h, new_w)
        new_h, new_w = scale * new_h, scale * new_w
    new_h, new_w = int(new_h + 0.5), int(new_w + 0.5)
    return new_h // multiple * multiple, new_w // multiple * multiple


def _aspect_size(height: int, width: int, size: int, max_size: int | None, multiple: int | None):
    """DETR's (and, with multiple=16 and its branch order, YOLOS's) shortest/longest-edge rule."""
    raw = None
    if max_size is not None:
        low, high = float(min(height, width)), float(max(height, width))
        if high / low * size > max_size:
            raw = max_size * low / high
            size = int(round(raw))
    base = raw if raw is not None else size
    if multiple is None and ((height <= width and height == size) or (width <= height and width == size)):
        return height, width
    if width < height:
        oh, ow = int(base * height / width), size
    elif multiple is not None and ((height <= width and height == size) or (width <= height and width == size)):
        oh, ow = height, width
    else:
        oh, ow = size, int(base * width / height)
    if multiple:
        oh, ow = oh - oh % multiple, ow - ow % multiple
    return oh, ow


def _dpt_size(height: int, width: int, out_h: int, out_w: int, keep_aspect: bool, multiple: int):
    def constrain(value):
        x = round(value / multiple) * multiple
        return math.ceil(value / multiple) * multiple if x < 0 else x

    scale_h, scale_w = out_h / height, out_w / width
    if keep_aspect:
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h
    return constrain(scale_h * height), constrain(scale_w * width)


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) → (height, width, C) around the centre; zero-padded where the image is smaller (as transformers)."""
    H, W = pixels.shape[:2]
    top, left = (H - height) // 2, (W - width) // 2
    if top >= 0 and left >= 0:
        return pixels[top: top + height, left: left + width]
    new_h, new_w = max(height, H), max(width, W)
    padded = np.zeros((new_h, new_w, pixels.shape[2]), dtype=pixels.dtype)
    pad_top, pad_left = math.ceil((new_h - H) / 2), math.ceil((new_w - W) / 2)
    padded[pad_top: pad_top + H, pad_left: pad_left + W] = pixels
    top, left = top + pad_top, left + pad_left
    return padded[max(0, top): min(new_h, top + height), max(0, left): min(new_w, left + width)]


def _pad_to_multiple(values: torch.Tensor, divisor: int) -> torch.Tensor:
    """DPT's pad_image: zeros around (split evenly, extra at the end) up to multiples of `divisor`."""
    _, H, W = values.shape
    ph, pw = math.ceil(H / divisor) * divisor - H, math.ceil(W / divisor) * divisor - W
    return torch.nn.functional.pad(values, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


# ----- which processors a checkpoint has -----
_IMAGE_KEYS = ("image_processor_type", "image_mean", "crop_size", "do_center_crop")


def is_image_config(config: dict) -> bool:
    """Whether a preprocessor_config.json describes an image processor (audio ones name a sampling_rate)."""
    name = str(config.get("image_processor_type") or config.get("feature_extractor_type") or "")
    if "sampling_rate" in config or name.removesuffix("Fast") in ("WhisperFeatureExtractor",
                                                                    "Wav2Vec2FeatureExtractor"):
        return False
    return name.replace("FeatureExtractor", "ImageProcessor").removesuffix("Fast") in PROCESSOR_DEFAULTS \
        or any(key in config for key in _IMAGE_KEYS)
