"""token-classification (alias ner): a label for every token, or entities grouped from those labels.

>>> ner = pipeline("ner", model="dbmdz/bert-large-cased-finetuned-conll03-english", aggregation_strategy="simple")
>>> ner("My name is Wolfgang and I live in Berlin")
[{'entity_group': 'PER', 'score': 0.99..., 'word': 'Wolfgang', 'start': 11, 'end': 19},
 {'entity_group': 'LOC', 'score': 0.99..., 'word': 'Berlin', 'start': 34, 'end': 40}]

`aggregation_strategy`: "none" gives one dict per token ({entity, score, index, word, start, end});
"simple" merges adjacent tokens of one tag (B-/I- rules); "first", "average" and "max" first make every
word take one label (from its first token, the averaged scores, or its most confident token), then
merge as "simple" does ({entity_group, score, word, start, end}). `stride` runs texts longer than the
model in overlapping windows and keeps, where two entities overlap, the longer (then the surer) one.
Without `stride`, over-long texts are cut to the model's limit with a one-time warning.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import ChunkPipeline
from .text import check_text, encode_many, encoding_tensors, model_token_limit

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")


@dataclass(frozen=True)
class _WithOffsets:
    """One input paired with the caller's own (start, end) character offsets for its tokens."""

    inputs: Any
    offset_mapping: list


class TokenClassificationPipeline(ChunkPipeline):
    """Label tokens; `aggregation_strategy`, `ignore_labels` (default ["O"]), `stride`, `is_split_into_words`
    (+ `delimiter`), `offset_mapping`, and the legacy `grouped_entities` / `ignore_subwords`."""

    per_token_outputs = ("logits",)

    def __call__(self, inputs=None, *args, **kwargs):
        offset_mapping = kwargs.pop("offset_mapping", None)
        split = kwargs.get("is_split_into_words", self._preprocess_params.get("is_split_into_words", False))
        if split and isinstance(inputs, (list, tuple)) and inputs \
                and not all(isinstance(x, (list, tuple)) for x in inputs):
            # One pre-split sentence: transformers runs it as a batch of one and answers with a list of one.
            inputs = [inputs]
        if offset_mapping is not None:
            inputs = _attach_offsets(inputs, offset_mapping)
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, ignore_labels=None, grouped_entities=None, ignore_subwords=None,
                             aggregation_strategy=None, offset_mapping=None, is_split_into_words=None, stride=None,
                             delimiter=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unknown parameter(s) for token-classification: {sorted(kwargs)}. Accepted: "
                            f"aggregation_strategy, ignore_labels, stride, is_split_into_words, delimiter, "
                            f"offset_mapping, grouped_entities, ignore_subwords.")
        if offset_mapping is not None:
            raise ValueError("`offset_mapping` belongs to the inputs of one call; pass it when calling the pipeline, "
                             "not when building it.")
        preprocess: dict[str, Any] = {}
        if is_split_into_words is not None:
            preprocess["is_split_into_words"] = bool(is_split_into_words)
        if delimiter is not None:
            if not isinstance(delimiter, str):
                raise TypeError(f"`delimiter` must be a string; got {type(delimiter).__name__}: {delimiter!r}.")
            preprocess["delimiter"] = delimiter
        postprocess: dict[str, Any] = {}
        if grouped_entities is not None or ignore_subwords is not None:
            aggregation_strategy = _legacy_strategy(grouped_entities, ignore_subwords)
        if aggregation_strategy is not None:
            aggregation_strategy = _check_strategy(aggregation_strategy)
            postprocess["aggregation_strategy"] = aggregation_strategy
        if ignore_labels is not None:
            if isinstance(ignore_labels, str) or not isinstance(ignore_labels, (list, tuple, set, frozenset)):
                raise TypeError(f"`ignore_labels` must be a list of label names (e.g. ['O']); got "
                                f"{type(ignore_labels).__name__}: {ignore_labels!r}.")
            postprocess["ignore_labels"] = tuple(ignore_labels)
        if stride is not None:
            if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
                raise ValueError(f"`stride` must be a non-negative integer (tokens shared by consecutive windows); "
                                 f"got {stride!r}.")
            if aggregation_strategy == "none":
                raise ValueError('`stride` runs the whole text in windows, which needs an aggregation_strategy other '
                                 'than "none"; pass "simple", "first", "average" or "max".')
            self._window(stride)
            preprocess["stride"] = stride
        return preprocess, {}, postprocess

    def _window(self, stride: int) -> int | None:
        """The window length for `stride`; the stride must leave room to move forward."""
        limit = model_token_limit(self)
        if limit is None:
            return None
        room = limit - self.tokenizer.num_special_tokens_to_add(False)
        if stride >= room:
            raise ValueError(f"`stride` must be smaller than the tokens a window holds: {limit} per window less "
                             f"{limit - room} special tokens leaves {room}; got stride={stride}.")
        return limit

    # ----- the contract -----
    def preprocess(self, inputs, **params):
        return self.preprocess_batch([inputs], **params)[0]

    def preprocess_batch(self, items, is_split_into_words=False, delimiter=" ", stride=None):
        """Each item's pieces (one per window of a long text), with all the items tokenised in one Rust call."""
        prepared = [_prepare(item, is_split_into_words, delimiter) for item in items]
        texts = [text for text, _, _, _ in prepared]
        limit = None if stride is None else self._window(stride)
        if limit is None:
            windows = [[e] for e in encode_many(self, texts, is_split_into_words=is_split_into_words)]
        else:
            windows = self.tokenizer.encode_batch(texts, truncation=True, max_length=limit, stride=stride,
                                                  return_overflowing_tokens=True,
                                                  is_split_into_words=is_split_into_words)
        names = self._model_input_names()
        results = []
        for (_, sentence, word_starts, offsets), encodings in zip(prepared, windows):
            for encoding in encodings:
                if offsets is not None and len(offsets) < len(encoding.ids):
                    raise ValueError(f"`offset_mapping` has {len(offsets)} (start, end) pairs but the input has "
                                     f"{len(encoding.ids)} tokens; give one pair per token.")
            results.append([{**encoding_tensors(encoding, names), "encoding": encoding, "sentence": sentence,
                             "word_starts": word_starts, "user_offsets": offsets} for encoding in encodings])
        return results

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs)}  # (B, T, num_labels)

    def postprocess(self, all_outputs, aggregation_strategy="none", ignore_labels=("O",)):
        entities = []
        for output in all_outputs:
            scores = output["logits"][0].float().softmax(dim=-1).numpy()  # (T, num_labels)
            tokens = self._gather_tokens(output, scores, aggregation_strategy)
            for entity in self._aggregate(tokens, aggregation_strategy):
                if entity.get("entity", entity.get("entity_group")) not in ignore_labels:
                    entities.append(entity)
        return _drop_overlaps(entities) if len(all_outputs) > 1 else entities

    # ----- tokens → entities -----
    def _gather_tokens(self, output, scores: np.ndarray, strategy: str) -> list[dict]:
        """One dict per non-special token: its text, scores, character span and whether it continues a word."""
        encoding, sentence = output["encoding"], output["sentence"]
        offsets = output["user_offsets"] or encoding.offsets
        word_starts = output["word_starts"]
        words = self.tokenizer.convert_ids_to_tokens(encoding.ids)
        # Vocabularies that mark word continuations (WordPiece's "##") tell sub-words apart: a token whose text
        # differs in length from its span is one; others fall back to "no space before it".
        word_aware = bool(getattr(self.tokenizer, "subword_prefix", None))
        if not word_aware and strategy in WORD_STRATEGIES:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning,
                          stacklevel=2)
        unk = self.tokenizer.unk_token_id
        tokens = []
        for index, (token_id, word, special) in enumerate(zip(encoding.ids, words, encoding.special_tokens_mask)):
            if special:
                continue
            start, end = offsets[index]
            if word_starts is not None and encoding.word_ids[index] is not None:
                shift = word_starts[encoding.word_ids[index]]
                start, end = start + shift, end + shift
            span = sentence[start:end]
            if token_id == unk:
                word, is_subword = span, False
            elif word_aware:
                is_subword = len(word) != len(span)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1: start + 1]
            tokens.append({"word": word, "scores": scores[index], "start": start, "end": end, "index": index,
                           "is_subword": is_subword})
        return tokens

    def _aggregate(self, tokens: list[dict], strategy: str) -> list[dict]:
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for token in tokens:
                best = int(token["scores"].argmax())
                entities.append({"entity": id2label[best], "score": float(token["scores"][best]),
                                 "index": token["index"], "word": token["word"], "start": token["start"],
                                 "end": token["end"]})
        else:
            words = _split_words(tokens)
            entities = [self._aggregate_word(word, strategy) for word in words]
        return entities if strategy == "none" else self._group(entities)

    def _aggregate_word(self, tokens: list[dict], strategy: str) -> dict:
        """One word's tokens → one entity whose label every token of the word shares."""
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.model.config.id2label[best], "score": float(scores[best]),
                "word": self.tokenizer.convert_tokens_to_string([t["word"] for t in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _group(self, entities: list[dict]) -> list[dict]:
        """Merge runs of adjacent entities with one tag; a B- tag always starts a new group."""
        groups: list[list[dict]] = []
        for entity in entities:
            prefix, tag = _split_tag(entity["entity"])
            if groups and prefix != "B" and tag == _split_tag(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [{"entity_group": group[0]["entity"].split("-", 1)[-1],
                 "score": float(np.nanmean([e["score"] for e in group])),
                 "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in group]),
                 "start": group[0]["start"], "end": group[-1]["end"]} for group in groups]


def _check_strategy(value) -> str:
    name = getattr(value, "value", value)  # an AggregationStrategy-like enum gives its value
    if isinstance(name, str) and name.lower() in STRATEGIES:
        return name.lower()
    raise ValueError(f"`aggregation_strategy` must be one of {', '.join(STRATEGIES)}; got {value!r}.")


def _legacy_strategy(grouped_entities, ignore_subwords) -> str:
    """transformers' mapping of the deprecated flags: grouped+ignore → first, grouped → simple, else none."""
    strategy = ("first" if ignore_subwords else "simple") if grouped_entities else "none"
    for name, value in (("grouped_entities", grouped_entities), ("ignore_subwords", ignore_subwords)):
        if value is not None:
            warnings.warn(f"`{name}` is deprecated and will be removed in version v5.0.0, defaulted to "
                          f'`aggregation_strategy="{strategy}"` instead.', UserWarning, stacklevel=5)
    return strategy


def _split_tag(label: str) -> tuple[str, str]:
    """'B-PER' → ('B', 'PER'); a label without a B-/I- prefix continues like an I- tag."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _split_words(tokens: list[dict]) -> list[list[dict]]:
    words: list[list[dict]] = []
    for token in tokens:
        if words and token["is_subword"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _drop_overlaps(entities: list[dict]) -> list[dict]:
    """Entities from overlapping windows: of two that overlap keep the longer span, then the higher score."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    kept, current = [], entities[0]
    for entity in entities:
        if current["start"] <= entity["start"] < current["end"]:
            length, current_length = entity["end"] - entity["start"], current["end"] - current["start"]
            if length > current_length or (length == current_length and entity["score"] > current["score"]):
                current = entity
        else:
            kept.append(current)
            current = entity
    kept.append(current)
    return kept


def _prepare(inputs, is_split_into_words: bool, delimiter: str):
    """One input → (what to tokenise, the sentence offsets refer to, each word's start in it or None, the
    caller's own offsets or None). Pre-split words are joined with `delimiter` into the sentence."""
    offsets = None
    if isinstance(inputs, _WithOffsets):
        inputs, offsets = inputs.inputs, inputs.offset_mapping
    if not is_split_into_words:
        text = check_text(inputs)
        return text, text, None, offsets
    words = _check_words(inputs)
    word_starts = list(itertools.accumulate((len(w) + len(delimiter) for w in words[:-1]), initial=0))
    return words, delimiter.join(words), word_starts, offsets


def _check_words(words) -> list[str]:
    if not isinstance(words, (list, tuple)):
        raise TypeError(f"With is_split_into_words=True each input must be a list of words; got "
                        f"{type(words).__name__}: {words!r}.")
    if not words:
        raise ValueError("With is_split_into_words=True an input is an empty list of words; give at least one.")
    bad = [w for w in words if not isinstance(w, str)]
    if bad:
        raise TypeError(f"With is_split_into_words=True every word must be a string; got {bad[0]!r} "
                        f"({type(bad[0]).__name__}).")
    return list(words)


def _is_offset_pair(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)


def _attach_offsets(inputs, offset_mapping):
    """Pair each input with its own offset mapping (one mapping for a single input, one per input for a list)."""
    if not isinstance(offset_mapping, (list, tuple)) or not offset_mapping:
        raise ValueError(f"`offset_mapping` must be a list of (start, end) pairs, or one such list per input; got "
                         f"{offset_mapping!r}.")
    mappings = [offset_mapping] if _is_offset_pair(offset_mapping[0]) else list(offset_mapping)
    for mapping in mappings:
        if not isinstance(mapping, (list, tuple)) or not all(_is_offset_pair(p) for p in mapping):
            raise ValueError(f"`offset_mapping` must hold (start, end) pairs of ints; got {mapping!r}.")
    if isinstance(inputs, (list, tuple)):
        if len(mappings) != len(inputs):
            raise ValueError(f"`offset_mapping` must give one mapping per input: {len(inputs)} input(s) but "
                             f"{len(mappings)} mapping(s).")
        return [_WithOffsets(item, mapping) for item, mapping in zip(inputs, mappings)]
    if isinstance(inputs, str):
        if len(mappings) != 1:
            raise ValueError(f"`offset_mapping` must give one mapping for a single input; got {len(mappings)}.")
        return _WithOffsets(inputs, mappings[0])
    raise ValueError(f"`offset_mapping` works with a string or a list of inputs; got {type(inputs).__name__}.")
