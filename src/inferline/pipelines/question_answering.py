"""question-answering: the span of a context that answers a question, from a span-logits head.

>>> qa = pipeline("question-answering", model="distilbert/distilbert-base-cased-distilled-squad")
>>> qa(question="Where do I live?", context="My name is Wolfgang and I live in Berlin")
{'score': 0.9..., 'start': 34, 'end': 40, 'answer': 'Berlin'}

A context too long for one model call is cut into windows of `max_seq_len` tokens that overlap by
`doc_stride` tokens, each holding the whole question; every window proposes its best spans and
answers with the same text (case-insensitive) add their scores. Matches transformers 4.57.6, except
that it never pads `top_k` with zero-score impossible spans (see `best_spans`), and that with a
left-padding tokenizer (context first) answers still come only from the context, where transformers
masks nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Iterator

import torch

from .base import ChunkPipeline
from .text import check_text, encoding_tensors, model_token_limit

DEFAULT_MAX_SEQ_LEN = 384
MASKED_LOGIT = -10000.0  # transformers' value for tokens that cannot be part of an answer
_INPUT_KEYWORDS = ("question", "context", "X", "data")


class QuestionAnsweringPipeline(ChunkPipeline):
    """Extractive QA; inputs as question=/context=, a dict {"question", "context"} or a list of dicts.

    Parameters: top_k (1), doc_stride (min(max_seq_len // 2, 128)), max_answer_len (15), max_seq_len
    (min(384, the model's limit)), handle_impossible_answer (False), align_to_words (True).
    max_question_len and padding are accepted and, as in transformers' fast-tokenizer path, change
    nothing (padded positions never take part in an answer).
    """

    per_token_outputs = ("start_logits", "end_logits")

    def __call__(self, *args, **kwargs):
        inputs = _gather_inputs(args, kwargs)
        if isinstance(inputs, list) and len(inputs) == 1:
            inputs = inputs[0]  # transformers' shape rule: one question answers with one result
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, topk=None, doc_stride=None, max_answer_len=None, max_seq_len=None,
                             max_question_len=None, handle_impossible_answer=None, align_to_words=None,
                             padding=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for question-answering: {sorted(unknown)}. Accepted: top_k, "
                            f"doc_stride, max_answer_len, max_seq_len, max_question_len, handle_impossible_answer, "
                            f"align_to_words, padding.")
        preprocess, postprocess = {}, {}
        if doc_stride is not None:
            preprocess["doc_stride"] = _check_int(doc_stride, "doc_stride", minimum=0)
        if max_seq_len is not None:
            preprocess["max_seq_len"] = _check_int(max_seq_len, "max_seq_len", minimum=1)
        if max_question_len is not None:
            _check_int(max_question_len, "max_question_len", minimum=1)
        if topk is not None and top_k is None:
            warnings.warn("`topk` is deprecated; use `top_k`.", UserWarning, stacklevel=3)
            postprocess["top_k"] = _check_int(topk, "topk", minimum=1)
        if top_k is not None:
            postprocess["top_k"] = _check_int(top_k, "top_k", minimum=1)
        if max_answer_len is not None:
            postprocess["max_answer_len"] = _check_int(max_answer_len, "max_answer_len", minimum=1)
        if handle_impossible_answer is not None:
            postprocess["handle_impossible_answer"] = bool(handle_impossible_answer)
        if align_to_words is not None:
            postprocess["align_to_words"] = bool(align_to_words)
        return preprocess, {}, postprocess

    def preprocess(self, example, doc_stride=None, max_seq_len=None) -> Iterator[dict[str, Any]]:
        question, context = question_and_context(example)
        max_seq_len = self._max_seq_len(max_seq_len)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len}); pass a "
                             f"smaller doc_stride.")
        # The question goes first unless the tokenizer pads on the left (transformers' rule).
        context_index = 0 if self.tokenizer.padding_side == "left" else 1
        texts = (context, question) if context_index == 0 else (question, context)
        encodings = window_encodings(self.tokenizer, texts, context_index, max_seq_len, doc_stride)
        names = self._model_input_names()
        cls_id = self.tokenizer.cls_token_id
        for encoding in encodings:
            in_context = torch.tensor([s == context_index for s in encoding.sequence_ids], dtype=torch.bool)
            if cls_id is not None:  # the CLS token stays selectable: models use it to say "no answer"
                in_context |= torch.tensor(encoding.ids) == cls_id
            yield {**encoding_tensors(encoding, names), "p_mask": ~in_context, "encoding": encoding,
                   "context": context, "context_index": context_index}

    def _max_seq_len(self, requested: int | None) -> int:
        limit = model_token_limit(self)
        if requested is None:
            return min(DEFAULT_MAX_SEQ_LEN, limit) if limit else DEFAULT_MAX_SEQ_LEN
        if limit and requested > limit:
            self.warn_once("max_seq_len", f"max_seq_len={requested} is more than this model takes; using its "
                                          f"limit of {limit} tokens instead.")
            return limit
        return requested

    def _forward(self, model_inputs):
        spans = self.model(**model_inputs)
        return {"start_logits": spans.start_logits, "end_logits": spans.end_logits}

    def postprocess(self, model_outputs, top_k=1, handle_impossible_answer=False, max_answer_len=15,
                    align_to_words=True):
        # Word alignment can merge several token spans into one answer, so ask each window for more.
        per_window = top_k * 2 + 10 if align_to_words else top_k
        null_score = 1e6
        answers: list[dict] = []
        by_text: dict[str, dict] = {}
        for output in model_outputs:
            spans, null = window_spans(output, per_window, max_answer_len)
            null_score = min(null_score, null)
            context, encoding = output["context"], output["encoding"]
            for first, last, score in spans:
                char_start, char_end = char_span(encoding, first, last, output["context_index"], align_to_words)
                text = context[char_start:char_end]
                same = by_text.get(text.lower())
                if same is not None:
                    same["score"] += score
                else:
                    by_text[text.lower()] = {"score": score, "start": char_start, "end": char_end, "answer": text}
                    answers.append(by_text[text.lower()])
        if handle_impossible_answer:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def window_encodings(tokenizer, texts: tuple, context_index: int, max_seq_len: int, doc_stride: int,
                     is_split_into_words: bool = False) -> list:
    """One (question, context) pair → its windows: encodings of at most max_seq_len tokens, each with the whole
    question, consecutive ones sharing doc_stride context tokens (one window when it all fits)."""
    # Windows need room for the context beside the question and the special tokens, and more than doc_stride
    # (else the Rust tokenizer panics); the short question alone tells, so the context is tokenised once.
    question = texts[1 - context_index]
    question_length = len(tokenizer.encode(question, add_special_tokens=False,
                                           is_split_into_words=is_split_into_words)[0].ids)
    room = max_seq_len - question_length - tokenizer.num_special_tokens_to_add(True)
    if room <= doc_stride:  # fine if it all fits in one window, else an error that says why
        encodings = tokenizer.encode(*texts, is_split_into_words=is_split_into_words)
        if len(encodings[0].ids) <= max_seq_len:
            return encodings
        _check_room(encodings[0], context_index, max_seq_len, doc_stride)
    return tokenizer.encode(*texts, truncation="only_first" if context_index == 0 else "only_second",
                            max_length=max_seq_len, stride=doc_stride, return_overflowing_tokens=True,
                            is_split_into_words=is_split_into_words)


def window_spans(output: dict, k: int, max_answer_len: int) -> tuple[list[tuple[int, int, float]], float]:
    """One window's model output (start/end logits (1, T), p_mask (T,)) → its k best token spans (first, last,
    score) and its no-answer score (the first token's start × end probability)."""
    allowed = ~output["p_mask"]
    start = span_probabilities(output["start_logits"][0], allowed)
    end = span_probabilities(output["end_logits"][0], allowed)
    null_score = (start[0] * end[0]).item()
    start[0] = end[0] = 0.0  # the first (CLS) token is never an answer span itself
    return best_spans(start, end, allowed, k, max_answer_len), null_score


def span_probabilities(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over one window's tokens (T,), with tokens outside the context masked out."""
    logits = torch.where(allowed, logits.float(), torch.tensor(MASKED_LOGIT))
    probs = torch.exp(logits - logits.max())
    return probs / probs.sum()


def best_spans(start: torch.Tensor, end: torch.Tensor, allowed: torch.Tensor, k: int, max_answer_len: int
               ) -> list[tuple[int, int, float]]:
    """The k best (start, end, score) spans, score = start prob × end prob, with start ≤ end < start +
    max_answer_len and both tokens in the context. Ties keep (start, end) order. Spans of score 0 are
    left out: transformers may fill top_k with them (even end-before-start ones), we return fewer."""
    T = start.shape[0]
    scores = start[:, None] * end[None, :]  # (T, T): [s, e]
    valid = torch.ones(T, T, dtype=torch.bool).triu().tril(max_answer_len - 1)
    valid &= allowed[:, None] & allowed[None, :]
    flat = torch.where(valid, scores, torch.zeros(())).flatten()
    candidates = torch.nonzero(flat > 0).flatten()
    order = torch.sort(flat[candidates], descending=True, stable=True).indices[:k]
    chosen = candidates[order]
    return [(i // T, i % T, s) for i, s in zip(chosen.tolist(), flat[chosen].tolist())]


def char_span(encoding, first: int, last: int, context_index: int, align_to_words: bool) -> tuple[int, int]:
    """Character span in the context of tokens first..last; widened to whole words when aligning,
    falling back to token offsets where the tokenizer has no word for a token."""
    if align_to_words:
        words = encoding.token_to_word(first), encoding.token_to_word(last)
        if None not in words:
            head = encoding.word_to_chars(words[0], context_index)
            tail = encoding.word_to_chars(words[1], context_index)
            if head is not None and tail is not None:
                return head[0], tail[1]
    return encoding.offsets[first][0], encoding.offsets[last][1]


def question_and_context(item) -> tuple[str, str]:
    """One input → (question, context): a dict with both keys, or an object with question_text and
    context_text (a transformers SquadExample)."""
    if isinstance(item, Mapping):
        missing = [k for k in ("question", "context") if k not in item]
        if missing:
            raise ValueError(f"A question-answering input needs the keys 'question' and 'context'; "
                             f"{' and '.join(map(repr, missing))} missing from a dict with keys {list(item)!r:.100}.")
        question, context = item["question"], item["context"]
    elif hasattr(item, "question_text") and hasattr(item, "context_text"):
        question, context = item.question_text, item.context_text
    else:
        raise TypeError(f"A question-answering input must be a dict {{'question': ..., 'context': ...}} (or use "
                        f"question=..., context=...); got {type(item).__name__}: {item!r:.60}.")
    for name, value in (("question", question), ("context", context)):
        if value is None:
            raise ValueError(f"`{name}` is None; give a non-empty string.")
    return check_text(question, "question"), check_text(context, "context")


def _gather_inputs(args: tuple, kwargs: dict):
    """transformers' input forms → one dict, a list of dicts, or an iterator; pops input keywords."""
    given = [k for k in _INPUT_KEYWORDS if k in kwargs]
    if args:
        if given:
            raise TypeError(f"Inputs were given both positionally and as {', '.join(given)}=; pass them once.")
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            return {"question": args[0], "context": args[1]}
        inputs = args[0] if len(args) == 1 else list(args)
    elif "X" in given or "data" in given:
        name = "X" if "X" in given else "data"
        warnings.warn(f"Passing inputs as `{name}=` is deprecated; use question= and context=.", FutureWarning,
                      stacklevel=3)
        inputs = kwargs.pop(name)
    elif given:
        question, context = kwargs.pop("question", None), kwargs.pop("context", None)
        return _pairs(question, context)
    else:
        raise ValueError("The question-answering pipeline needs a question and a context: pass question=..., "
                         "context=..., a dict {'question': ..., 'context': ...}, or a list of such dicts.")
    if isinstance(inputs, Mapping) and isinstance(inputs.get("question"), list):
        return _pairs(inputs["question"], inputs.get("context"))
    if isinstance(inputs, tuple):
        return list(inputs)
    return inputs


def _pairs(question, context):
    """question=/context= → one dict or a list of dicts (a list of questions may share one context)."""
    if question is None or context is None:
        missing = "question" if question is None else "context"
        raise ValueError(f"`{missing}` is missing or None; question answering needs both question= and context=.")
    if isinstance(question, str) and isinstance(context, str):
        return {"question": question, "context": context}
    if isinstance(question, list) and isinstance(context, str):
        return [{"question": q, "context": context} for q in question]
    if isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise ValueError(f"Got {len(question)} questions but {len(context)} contexts; pass one context per "
                             f"question, or a single context string for all of them.")
        return [{"question": q, "context": c} for q, c in zip(question, context)]
    raise TypeError(f"`question` must be a string or a list of strings and `context` a string or (with a list of "
                    f"questions) a list of strings; got question: {type(question).__name__}, context: "
                    f"{type(context).__name__}.")


def _check_room(encoding, context_index: int, max_seq_len: int, doc_stride: int) -> None:
    """Windows need room for the context beside the question and special tokens, and more than doc_stride."""
    sequence_ids = encoding.sequence_ids
    question_len = sum(s == 1 - context_index for s in sequence_ids)
    specials = sum(s is None for s in sequence_ids)
    room = max_seq_len - question_len - specials
    if room <= 0:
        raise ValueError(f"The question is {question_len} tokens long; with {specials} special tokens it leaves no "
                         f"room for the context within max_seq_len={max_seq_len}. Pass a larger max_seq_len or a "
                         f"shorter question.")
    if doc_stride >= room:
        raise ValueError(f"`doc_stride` ({doc_stride}) must be smaller than the room left for the context in each "
                         f"window: {room} tokens (max_seq_len {max_seq_len} - question {question_len} - special "
                         f"tokens {specials}). Pass a smaller doc_stride or a larger max_seq_len.")


def _check_int(value, name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return value
