"""Image input: `load_image` turns any accepted form (path, URL, base64, bytes, PIL image, array) into an RGB
PIL image, with transformers 4.57.6's mode conversions; errors name the input and what is accepted."""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

ACCEPTED = ("a local path, an http(s) URL, a base64 string or data URI, raw bytes, a PIL.Image, or a uint8 "
            "numpy array / torch tensor (HWC, CHW or HW)")


def _pil():
    try:
        import PIL.Image
        import PIL.ImageOps
    except ImportError:
        raise ImportError('Image input needs Pillow: pip install "inferline[vision]"') from None
    return PIL


# ----- load_image -----
def load_image(image: Any, timeout: float | None = None):
    """Any accepted image form → an RGB `PIL.Image`, EXIF orientation applied (transformers' load_image, which
    converts every mode — RGBA, LA, P, L, CMYK, I;16 — with PIL's `convert("RGB")`). A list gives a list."""
    if isinstance(image, (list, tuple)):
        return [load_image(item, timeout) for item in image]
    PIL = _pil()
    if isinstance(image, PIL.Image.Image):
        opened = image
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        opened = _from_array(image)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        opened = _open_bytes(bytes(image), "the given bytes")
    elif isinstance(image, os.PathLike):
        opened = _open_path(Path(image))
    elif isinstance(image, str):
        opened = _open_string(image, timeout)
    else:
        raise TypeError(f"Unsupported image input of type {type(image).__name__}; accepted: {ACCEPTED}.")
    if opened.width == 0 or opened.height == 0:
        raise ValueError(f"The image {_describe(image)} has no pixels (size {opened.width}x{opened.height}).")
    opened = PIL.ImageOps.exif_transpose(opened)
    return opened if opened.mode == "RGB" else opened.convert("RGB")


def _describe(image) -> str:
    text = repr(image) if isinstance(image, str) else type(image).__name__
    return text if len(text) <= 80 else text[:77] + "...'"


def _open_string(text: str, timeout: float | None):
    if text.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(text, timeout=timeout) as response:  # noqa: S310 (http(s) only)
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise OSError(f"Could not download the image at {text!r}: {error}.") from None
        return _open_bytes(data, f"the content of {text!r}")
    if os.path.isfile(text):
        return _open_path(Path(text))
    payload = text.split(",", 1)[1] if text.startswith("data:image/") and "," in text else text
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        data = None
    if not data:
        if text.startswith("data:") or len(text) > 256:
            raise ValueError(f"The image string {_describe(text)} is not valid base64 image data.")
        raise FileNotFoundError(f"No image file at {text!r} (and it is not an http(s) URL or base64 data); "
                                f"accepted: {ACCEPTED}.")
    return _open_bytes(data, f"the base64 string {_describe(text)}")


def _open_path(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {str(path)!r}.")
    return _open_bytes(path.read_bytes(), repr(str(path)))


def _open_bytes(data: bytes, what: str):
    PIL = _pil()
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Could not read an image from {what}: {error}") from None
    return image


def _from_array(array):
    """uint8 (or [0, 1] float) HWC / CHW / HW array → PIL image, as transformers' to_pil_image converts it."""
    PIL = _pil()
    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if data.ndim == 3 and data.shape[0] in (1, 3, 4) and data.shape[-1] not in (1, 3, 4):
        data = np.moveaxis(data, 0, -1)  # CHW → HWC
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
        raise ValueError(f"An image array must be HW, HWC or CHW with 1, 3 or 4 channels; got shape "
                         f"{tuple(array.shape)}.")
    if data.size == 0:
        raise ValueError(f"The image array has no pixels (shape {tuple(array.shape)}).")
    if data.dtype != np.uint8:
        if data.dtype == np.bool_ or not np.issubdtype(data.dtype, np.number):
            raise TypeError(f"An image array must hold uint8 values (or floats in [0, 1]); got dtype {data.dtype}.")
        if np.issubdtype(data.dtype, np.floating) and data.min() >= 0 and data.max() <= 1 \
                and not np.allclose(data, data.astype(int)):
            data = data * 255
        elif data.min() < 0 or data.max() > 255:
            raise ValueError(f"An image array must hold values in [0, 255] (or [0, 1] as floats); got "
                             f"[{data.min()}, {data.max()}].")
        data = data.astype(np.uint8)
    return PIL.Image.fromarray(np.ascontiguousarray(data))
