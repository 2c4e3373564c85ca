"""depth-estimation: a depth map for an image, as a tensor and as a grey image.

>>> estimate = pipeline("depth-estimation", model="Intel/dpt-large")
>>> out = estimate("room.jpg")
>>> out["predicted_depth"].shape, out["depth"].mode
(torch.Size([480, 640]), 'L')

`predicted_depth` is the model's map resized bicubically to the input image's size; `depth` is it min-max
scaled to 0–255 (truncated to uint8, as transformers 4.57.6 does; a constant map is all black here, where
transformers divides by zero). Images of different processed sizes (Depth Anything keeps the aspect ratio)
batch correctly: a batch holds one size, and results equal unbatched ones.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from .base import Pipeline
from .vision import ImagePipelineMixin, SameSizeBatches


class DepthEstimationPipeline(SameSizeBatches, ImagePipelineMixin, Pipeline):
    """`timeout` (also as `parameters={"timeout": ...}`, transformers' older form)."""

    def _sanitize_parameters(self, timeout=None, parameters=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for depth-estimation: {sorted(unknown)}. Accepted: timeout, "
                            f"parameters.")
        if parameters is not None and not isinstance(parameters, dict):
            raise TypeError(f"`parameters` must be a dict such as {{'timeout': 5}}; got {parameters!r}.")
        if isinstance(parameters, dict) and "timeout" in parameters:
            timeout = parameters["timeout"]
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise TypeError(f"`timeout` must be a number of seconds; got {timeout!r}.")
        return ({"timeout": timeout} if timeout is not None else {}), {}, {}

    def preprocess(self, image, timeout=None):
        inputs, picture = self.pixel_inputs(image, timeout)
        return {**inputs, "target_size": (picture.height, picture.width)}

    def _forward(self, model_inputs):
        return {"predicted_depth": self.model(**self.model_dtype_inputs(model_inputs))}  # (B, H', W')

    def postprocess(self, model_outputs):
        from PIL import Image

        depth = model_outputs["predicted_depth"][:, None].float()  # (1, 1, H', W'); resized in float32
        depth = F.interpolate(depth, size=model_outputs["target_size"], mode="bicubic", align_corners=False)[0, 0]
        values = depth.numpy()
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        return {"predicted_depth": depth, "depth": Image.fromarray((scaled * 255).astype("uint8"))}

