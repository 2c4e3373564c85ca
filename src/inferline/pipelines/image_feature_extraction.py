"""image-feature-extraction: the backbone's hidden states (or pooled output) for an image.

>>> extract = pipeline("image-feature-extraction", model="google/vit-base-patch16-224")
>>> len(extract("cat.png", pool=True)[0])
768
"""

from __future__ import annotations

from .base import Pipeline
from .vision import ImagePipelineMixin


class ImageFeatureExtractionPipeline(ImagePipelineMixin, Pipeline):
    """`pool=True` gives the pooler output; `image_processor_kwargs` override the processor; `return_tensors`."""

    def _sanitize_parameters(self, image_processor_kwargs=None, return_tensors=None, pool=None, timeout=None,
                             **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for image-feature-extraction: {sorted(unknown)}. Accepted: pool, "
                            f"image_processor_kwargs, return_tensors, timeout.")
        pre = dict(image_processor_kwargs or {})
        if timeout is not None:
            pre["timeout"] = timeout
        post = {}
        if pool is not None:
            post["pool"] = pool
        if return_tensors is not None:
            post["return_tensors"] = return_tensors
        return pre, {}, post

    def preprocess(self, image, timeout=None, **image_processor_kwargs):
        return self.pixel_inputs(image, timeout, **image_processor_kwargs)[0]

    def _forward(self, model_inputs):
        out = self.model(**self.model_dtype_inputs(model_inputs))
        return {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output}

    def postprocess(self, model_outputs, pool=False, return_tensors=False):
        if pool:
            outputs = model_outputs.get("pooler_output")
            if outputs is None:
                raise ValueError("No pooled output was returned. Make sure the model has a `pooler` layer when "
                                 "using the `pool` option.")
        else:
            outputs = model_outputs["last_hidden_state"]
        return outputs if return_tensors else outputs.tolist()
