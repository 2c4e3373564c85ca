"""fill-mask: the most likely tokens for each mask token of a text, from a masked-LM head.

>>> fill = pipeline("fill-mask", model="distilbert/distilroberta-base")
>>> fill("Paris is the <mask> of France.", top_k=1)
[{'score': 0..., 'token': 812, 'token_str': ' capital', 'sequence': 'Paris is the capital of France.'}]

One mask gives a list of `top_k` predictions; several masks give one such list per mask (each mask
scored on its own, not jointly). `targets` restricts the candidates to the given words.
"""

from __future__ import annotations

import logging

import torch

from .base import Pipeline
from .text import check_text, check_tokenizer_options, encode_many, encoding_tensors

logger = logging.getLogger(__name__)


class FillMaskPipeline(Pipeline):
    """Predict masked tokens; `top_k` (default 5), `targets`, `tokenizer_kwargs`."""

    per_token_outputs = ("logits", "input_ids")

    def __call__(self, inputs=None, *args, **kwargs):
        result = super().__call__(inputs, *args, **kwargs)
        # transformers' shape rule: a one-element list gives that element's result, unwrapped.
        if isinstance(inputs, list) and len(inputs) == 1:
            return result[0]
        return result

    def _sanitize_parameters(self, top_k=None, targets=None, tokenizer_kwargs=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unknown parameter(s) for fill-mask: {sorted(kwargs)}. Accepted: top_k, targets, "
                            f"tokenizer_kwargs.")
        if self.tokenizer is None or self.tokenizer.mask_token_id is None:
            raise ValueError("The fill-mask pipeline needs a tokenizer that defines a mask token; this one has none.")
        preprocess = {}
        if tokenizer_kwargs is not None:
            preprocess = check_tokenizer_options(tokenizer_kwargs, "tokenizer_kwargs")
        postprocess = {}
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
                raise ValueError(f"`top_k` must be a positive integer; got {top_k!r}.")
            postprocess["top_k"] = top_k
        if targets is not None:
            postprocess["target_ids"] = self._target_ids(targets)
        return preprocess, {}, postprocess

    def _target_ids(self, targets) -> list[int]:
        """Vocabulary ids of the targets; a word outside the vocabulary stands for its first sub-token."""
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise TypeError(f"`targets` must be a string or a list of strings; got {targets!r}.")
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            found = vocab.get(target)
            if found is None:
                pieces = self.tokenizer.encode(target, add_special_tokens=False)[0].ids
                if not pieces:
                    logger.warning("The target %r is not in the model vocabulary and tokenises to nothing; "
                                   "ignoring it.", target)
                    continue
                found = pieces[0]
                logger.warning("The target %r is not in the model vocabulary; using its first sub-token %r "
                               "instead (pass vocabulary tokens to avoid this).", target,
                               self.tokenizer.convert_ids_to_tokens(found))
            ids.append(found)
        if not ids:
            raise ValueError(f"`targets` gave no usable token: {list(targets)!r}; pass at least one word.")
        return list(set(ids))  # duplicates collapse, in transformers' (set) order

    def preprocess(self, inputs, **params):
        return self.preprocess_batch([inputs], **params)[0]

    def preprocess_batch(self, items, truncation=None, max_length=None, add_special_tokens=True):
        encodings = encode_many(self, [check_text(item) for item in items], truncation=truncation,
                                max_length=max_length, add_special_tokens=add_special_tokens)
        for item, encoding in zip(items, encodings):
            if self.tokenizer.mask_token_id not in encoding.ids:
                raise ValueError(f"No mask token ({self.tokenizer.mask_token}) found in the input {item!r:.80}; put "
                                 f"{self.tokenizer.mask_token} where a word should be predicted.")
        return [encoding_tensors(encoding, self._model_input_names()) for encoding in encodings]

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs), "input_ids": model_inputs["input_ids"]}

    def postprocess(self, model_outputs, top_k=5, target_ids=None):
        input_ids = model_outputs["input_ids"][0]  # (T,)
        positions = (input_ids == self.tokenizer.mask_token_id).nonzero().squeeze(-1)  # (M,)
        probs = model_outputs["logits"][0, positions].float().softmax(dim=-1)  # (M, V)
        if target_ids is not None:
            probs = probs[:, torch.tensor(target_ids)]  # (M, len(targets))
        values, predictions = probs.topk(min(top_k, probs.shape[-1]))  # (M, k)
        single = len(positions) == 1
        pad = self.tokenizer.pad_token_id
        rows = []
        for position, scores, picks in zip(positions.tolist(), values.tolist(), predictions.tolist()):
            row = []
            for score, pick in zip(scores, picks):
                token = target_ids[pick] if target_ids is not None else pick
                ids = input_ids.tolist()
                ids[position] = token
                ids = [i for i in ids if i != pad]
                # With several masks the other mask tokens stay visible, so special tokens are kept.
                row.append({"score": score, "token": token, "token_str": self.tokenizer.decode([token]),
                            "sequence": self.tokenizer.decode(ids, skip_special_tokens=single)})
            rows.append(row)
        return rows[0] if single else rows
