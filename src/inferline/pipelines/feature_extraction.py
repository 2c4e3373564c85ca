"""feature-extraction: the model's last hidden states, or (beyond transformers) pooled sentence embeddings.

>>> embed = pipeline("feature-extraction", model="sentence-transformers/all-MiniLM-L6-v2")
>>> vectors = embed(["A man is eating.", "Someone eats."], pooling="mean", normalize=True)
>>> len(vectors), len(vectors[0])
(2, 384)

Without `pooling` each input gives [1][tokens][hidden] nested lists, as transformers does, at its
own length whatever the batch. `pooling` ("mean", "cls", "max", or "auto" to read the checkpoint's
sentence-transformers 1_Pooling/config.json) gives one [hidden] vector per input; `normalize=True`
scales it to unit length, which together equal sentence-transformers' `encode`. "auto" also cuts
inputs, silently as sentence-transformers does, to the checkpoint's sentence_bert_config.json
`max_seq_length`.
"""

from __future__ import annotations

import json

import torch

from .base import Pipeline
from .text import check_text, check_tokenizer_options, check_truncation, encode_many, encoding_tensors

POOLINGS = ("mean", "cls", "max", "auto", "none")


class FeatureExtractionPipeline(Pipeline):
    per_token_outputs = ("last_hidden_state",)

    def _sanitize_parameters(self, truncation=None, tokenize_kwargs=None, return_tensors=None, pooling=None,
                             normalize=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unknown parameter(s) for feature-extraction: {sorted(kwargs)}. Accepted: truncation, "
                            f"tokenize_kwargs, return_tensors, pooling, normalize.")
        tokenize_kwargs = check_tokenizer_options({} if tokenize_kwargs is None else tokenize_kwargs,
                                                  "tokenize_kwargs")
        if truncation is not None:
            if "truncation" in tokenize_kwargs:
                raise ValueError("`truncation` was given both directly and in tokenize_kwargs; pass it once.")
            tokenize_kwargs["truncation"] = check_truncation(truncation)
        postprocess = {}
        if return_tensors is not None:
            postprocess["return_tensors"] = bool(return_tensors)
        if pooling is not None:
            if pooling not in POOLINGS:
                raise ValueError(f"`pooling` must be one of {', '.join(POOLINGS)}; got {pooling!r}.")
            postprocess["pooling"] = self._pooling_from_checkpoint() if pooling == "auto" else pooling
            # Always set, so a call-time pooling overrides the length limit of a construction-time "auto".
            tokenize_kwargs["pooling_max_length"] = self._max_seq_length() if pooling == "auto" else None
        if normalize is not None:
            postprocess["normalize"] = bool(normalize)
        return tokenize_kwargs, {}, postprocess

    def _pooling_from_checkpoint(self) -> str:
        folder = getattr(self.model, "checkpoint_dir", None)
        path = folder / "1_Pooling" / "config.json" if folder is not None else None
        if path is None or not path.is_file():
            return "mean"
        modes = json.loads(path.read_text())
        for key, name in (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                          ("pooling_mode_mean_tokens", "mean")):
            if modes.get(key):
                return name
        raise ValueError(f"{str(path)!r} asks for a pooling mode inferline does not offer; use pooling='mean', "
                         f"'cls' or 'max'.")

    def _max_seq_length(self) -> int | None:
        """sentence-transformers' input limit (sentence_bert_config.json max_seq_length), if the checkpoint has one."""
        folder = getattr(self.model, "checkpoint_dir", None)
        path = folder / "sentence_bert_config.json" if folder is not None else None
        if path is None or not path.is_file():
            return None
        return json.loads(path.read_text()).get("max_seq_length")

    def preprocess(self, inputs, **params):
        return self.preprocess_batch([inputs], **params)[0]

    def preprocess_batch(self, items, truncation=None, max_length=None, add_special_tokens=True,
                         pooling_max_length=None):
        if pooling_max_length is not None and max_length is None:
            max_length = pooling_max_length
            truncation = True if truncation is None else truncation  # sentence-transformers cuts without a warning
        encodings = encode_many(self, [check_text(item) for item in items], truncation=truncation,
                                max_length=max_length, add_special_tokens=add_special_tokens, offsets=False)
        return [encoding_tensors(encoding, self._model_input_names()) for encoding in encodings]

    def _forward(self, model_inputs):
        return {"last_hidden_state": self.model(**model_inputs)}

    def postprocess(self, model_outputs, return_tensors=False, pooling="none", normalize=False):
        hidden = model_outputs["last_hidden_state"]  # (1, T, C): this item's tokens only
        if pooling == "mean":
            hidden = hidden.mean(dim=1)[0]
        elif pooling == "cls":
            hidden = hidden[0, 0]
        elif pooling == "max":
            hidden = hidden.max(dim=1).values[0]
        if normalize:
            hidden = torch.nn.functional.normalize(hidden.float(), p=2, dim=-1)
        return hidden if return_tensors else hidden.tolist()
