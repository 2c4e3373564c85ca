"""What the image pipelines share: turning one input into processed pixels, and the `images=` keyword."""

from __future__ import annotations

from typing import Any

from ..processing.image import load_image


class ImagePipelineMixin:
    """For pipelines whose inputs are images: no tokenizer needed unless the task says so."""

    needs_tokenizer = False

    def __call__(self, inputs=None, *args, **kwargs):
        if "images" in kwargs:  # transformers' older keyword
            if inputs is not None:
                raise ValueError("Pass the images either positionally or as `images=`, not both.")
            inputs = kwargs.pop("images")
        return super().__call__(inputs, *args, **kwargs)

    def pixel_inputs(self, image: Any, timeout: float | None = None, **processor_options) -> tuple[dict, Any]:
        """One image input → ({"pixel_values": (3, H, W), ...}, the RGB PIL image)."""
        if self.image_processor is None:
            raise ValueError(f"The {self.task} pipeline needs an image processor: the checkpoint has no "
                             f"preprocessor_config.json; pass `image_processor=`.")
        picture = load_image(image, timeout=timeout)
        processor = self.image_processor.with_options(**processor_options) if processor_options else \
            self.image_processor
        return processor.preprocess(picture), picture

    def model_dtype_inputs(self, model_inputs: dict) -> dict:
        dtype = self.dtype
        return {k: (v.to(dtype) if v.is_floating_point() and dtype is not None else v) for k, v in model_inputs.items()}
