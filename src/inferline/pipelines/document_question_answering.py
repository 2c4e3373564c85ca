"""document-question-answering: the words of a page image that answer a question, from a LayoutLM-style model.

>>> docqa = pipeline("document-question-answering", model="impira/layoutlm-document-qa")
>>> docqa(image="invoice.png", question="What is the invoice number?")
[{'score': 0.42..., 'answer': 'us-001', 'start': 16, 'end': 16}]

The page's words and their boxes (x0, y0, x1, y1 in 0–1000 of the page) come from `word_boxes`, or from
Tesseract OCR of the image (processing/ocr.py; `lang`, `tesseract_config`). The question's words and the
page's words are tokenised as a pair of pre-split sequences, cut into windows of `max_seq_len` tokens that
overlap by `doc_stride`; every token carries its word's box (special tokens the boxes the tokenizer
declares, else transformers' [0]*4 / [1000]*4 for SEP), and models that also read the image get the
image processor's `pixel_values`. Each window proposes its `top_k` spans of page words (the span scoring
of question-answering); answers are word indices into the page's words. Matches transformers 4.57.6
(results are always a list, as there), which runs LayoutLMv3 only without its image processor and cannot
batch windows of different lengths; here both work.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from numbers import Real
from typing import Any

import torch

from ..processing.image import load_image
from .base import ChunkPipeline
from .question_answering import _check_int, window_encodings, window_spans
from .text import check_text, encoding_tensors, model_token_limit

LAYOUT_RANGE = 1000  # boxes are given in thousandths of the page
DEFAULT_BOXES = {"cls": [0] * 4, "sep": [LAYOUT_RANGE] * 4, "pad": [0] * 4}  # transformers' LayoutLM rule
_PARAMETERS = ("top_k", "max_answer_len", "handle_impossible_answer", "doc_stride", "max_seq_len",
               "max_question_len", "lang", "tesseract_config", "timeout", "padding")


class DocumentQuestionAnsweringPipeline(ChunkPipeline):
    """Extractive question answering over a document image.

    Inputs: image= and question= (optionally word_boxes=[(word, [x0, y0, x1, y1]), ...]), positionally in that
    order, a dict {"image", "question", "word_boxes"?}, or a list of such dicts; a list of questions asks each
    of one image. Parameters: top_k (1), max_answer_len (15), handle_impossible_answer (False), max_seq_len
    (the tokenizer's model_max_length, at most what the model takes), doc_stride (min(max_seq_len // 2, 256)),
    lang and tesseract_config (OCR), timeout (image download). Returns a list of
    {"score", "answer", "start", "end"} per input, best first; start and end index the page's words.
    """

    per_token_outputs = ("start_logits", "end_logits")

    def __call__(self, image=None, question=None, word_boxes=None, **kwargs):
        if isinstance(question, str):
            inputs: Any = {"image": image, "question": question}
            if word_boxes is not None:
                inputs["word_boxes"] = word_boxes
        elif isinstance(question, (list, tuple)):  # the documented broadcast: one image, several questions
            inputs = [{"image": image, "question": q, **({"word_boxes": word_boxes} if word_boxes is not None
                                                         else {})} for q in question]
        elif question is not None:
            raise TypeError(f"`question` must be a string or a list of strings; got {type(question).__name__}: "
                            f"{question!r:.60}.")
        elif word_boxes is not None:
            raise ValueError("`word_boxes` was given without a `question`; pass question=... too.")
        else:
            inputs = image
        if inputs is None:
            raise ValueError("The document-question-answering pipeline needs an image and a question: pass "
                             "image=..., question=... (and optionally word_boxes=...), or a dict / list of dicts "
                             "with those keys.")
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, max_answer_len=None, handle_impossible_answer=None, doc_stride=None,
                             max_seq_len=None, max_question_len=None, lang=None, tesseract_config=None,
                             timeout=None, padding=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for document-question-answering: {sorted(unknown)}. Accepted: "
                            f"{', '.join(_PARAMETERS)}.")
        pre, post = {}, {}
        if doc_stride is not None:
            pre["doc_stride"] = _check_int(doc_stride, "doc_stride", minimum=0)
        if max_seq_len is not None:
            pre["max_seq_len"] = _check_int(max_seq_len, "max_seq_len", minimum=1)
        if max_question_len is not None:  # transformers accepts it and then fails; it changes nothing here
            _check_int(max_question_len, "max_question_len", minimum=1)
        for name, value in (("lang", lang), ("tesseract_config", tesseract_config)):
            if value is not None:
                if not isinstance(value, str):
                    raise TypeError(f"`{name}` must be a string; got {type(value).__name__}: {value!r:.60}.")
                pre[name] = value
        if timeout is not None:
            pre["timeout"] = timeout
        if padding not in (None, False, "do_not_pad", "longest", True):
            warnings.warn(f"padding={padding!r} changes nothing: windows are padded per batch, which never changes "
                          f"the answers.", UserWarning, stacklevel=3)
        if top_k is not None:
            post["top_k"] = _check_int(top_k, "top_k", minimum=1)
        if max_answer_len is not None:
            post["max_answer_len"] = _check_int(max_answer_len, "max_answer_len", minimum=1)
        if handle_impossible_answer is not None:
            post["handle_impossible_answer"] = bool(handle_impossible_answer)
        return pre, {}, post

    # ----- preprocess -----
    def preprocess(self, item, doc_stride=None, max_seq_len=None, lang=None, tesseract_config=None,
                   timeout=None) -> Iterator[dict[str, Any]]:
        if not isinstance(item, Mapping):
            raise TypeError(f"A document-question-answering input must be a dict {{'image': ..., 'question': ..., "
                            f"'word_boxes'?: ...}} (or use image=..., question=...); got {type(item).__name__}: "
                            f"{item!r:.60}.")
        question = check_text(item.get("question"), "question")
        max_seq_len = self._max_seq_len(max_seq_len)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 256)
        image = load_image(item["image"], timeout=timeout) if item.get("image") is not None else None
        pixels = self._pixel_values(image)
        if item.get("word_boxes") is not None:
            words, boxes = check_word_boxes(item["word_boxes"])
        elif image is not None:
            from ..processing.ocr import read_words

            words, boxes = read_words(image, lang=lang if lang is not None else self._ocr_option("ocr_lang"),
                                      tesseract_config=tesseract_config if tesseract_config is not None
                                      else self._ocr_option("tesseract_config") or "")
        else:
            raise ValueError("document-question-answering needs an `image` (its words are read with OCR) or "
                             "`word_boxes`=[(word, [x0, y0, x1, y1]), ...]; got neither.")
        texts = (question.split(), words)
        encodings = window_encodings(self.tokenizer, texts, 1, max_seq_len, doc_stride, is_split_into_words=True)
        names = self._model_input_names()
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        special = self._special_boxes()
        for encoding in encodings:
            ids = torch.tensor(encoding.ids)
            in_page = torch.tensor([s == 1 for s in encoding.sequence_ids], dtype=torch.bool)
            selectable = in_page | (ids == cls_id) if cls_id is not None else in_page  # CLS: "no answer"
            piece = {**encoding_tensors(encoding, names), "p_mask": ~selectable, "word_ids": encoding.word_ids,
                     "words": words}
            if "bbox" in names:
                piece["bbox"] = token_boxes(encoding, boxes, cls_id, sep_id, special)
            if pixels is not None and "pixel_values" in names:
                piece["pixel_values"] = pixels
            yield piece

    def _max_seq_len(self, requested: int | None) -> int:
        limit = model_token_limit(self)
        if requested is None:
            return limit if limit else self.tokenizer.model_max_length
        if limit and requested > limit:
            self.warn_once("max_seq_len", f"max_seq_len={requested} is more than this model takes; using its "
                                          f"limit of {limit} tokens instead.")
            return limit
        return requested

    def _pixel_values(self, image) -> torch.Tensor | None:
        """The image processor's (3, H, W) pixels, for models that read the page image too."""
        if image is None or self.image_processor is None or "pixel_values" not in self._model_input_names():
            return None
        return self.image_processor.preprocess(image)["pixel_values"]

    def _ocr_option(self, name: str):
        """An OCR setting the image processor's config declares (LayoutLMv2/v3: ocr_lang, tesseract_config)."""
        return (getattr(self.image_processor, "raw", None) or {}).get(name)

    def _special_boxes(self) -> dict[str, list[int]]:
        """Boxes of the tokens that are no page word: the tokenizer's cls/sep/pad_token_box where it declares
        them (LayoutLMv2/v3 tokenizers), else transformers' LayoutLM rule (SEP at 1000s, others at 0s)."""
        config = getattr(self.tokenizer, "config", {}) or {}
        return {k: list(config.get(f"{k}_token_box", v)) for k, v in DEFAULT_BOXES.items()}

    # ----- forward and postprocess -----
    def _forward(self, model_inputs):
        dtype = self.dtype
        inputs = {k: v.to(dtype) if v.is_floating_point() and dtype is not None else v for k, v in model_inputs.items()}
        spans = self.model(**inputs)
        return {"start_logits": spans.start_logits, "end_logits": spans.end_logits}

    def postprocess(self, model_outputs, top_k=1, handle_impossible_answer=False, max_answer_len=15):
        null_score = 1e6
        answers = []
        for output in model_outputs:
            spans, null = window_spans(output, top_k, max_answer_len)
            null_score = min(null_score, null)
            word_ids, words = output["word_ids"], output["words"]
            for first, last, score in spans:
                start, end = word_ids[first], word_ids[last]
                if start is not None and end is not None:
                    answers.append({"score": score, "answer": " ".join(words[start: end + 1]), "start": start,
                                    "end": end})
        if handle_impossible_answer:
            answers.append({"score": null_score, "answer": "", "start": 0, "end": 0})
        return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


def token_boxes(encoding, boxes: list[list[int]], cls_id, sep_id, special: dict) -> torch.Tensor:
    """(T, 4) box per token: its page word's box; CLS, SEP and question tokens the special boxes."""
    out = []
    for token, sequence, word in zip(encoding.ids, encoding.sequence_ids, encoding.word_ids):
        if sequence == 1 and word is not None:
            out.append(boxes[word])
        elif token == cls_id and word is None:
            out.append(special["cls"])
        elif token == sep_id:
            out.append(special["sep"])
        else:
            out.append(special["pad"])
    return torch.tensor(out, dtype=torch.long).reshape(-1, 4)


def check_word_boxes(word_boxes) -> tuple[list[str], list[list[int]]]:
    """[(word, [x0, y0, x1, y1]), ...] with coordinates in 0–1000 → (words, int boxes), else a clear error."""
    if isinstance(word_boxes, (str, bytes, Mapping)) or not hasattr(word_boxes, "__iter__"):
        raise TypeError(f"`word_boxes` must be a list of (word, [x0, y0, x1, y1]) pairs; got "
                        f"{type(word_boxes).__name__}: {word_boxes!r:.60}.")
    words, boxes = [], []
    for index, entry in enumerate(word_boxes):
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
            raise ValueError(f"`word_boxes` entry {index} must be a (word, [x0, y0, x1, y1]) pair with a string "
                             f"word; got {entry!r:.60}.")
        word, box = entry
        if not isinstance(box, (list, tuple)) or len(box) != 4 or \
                not all(isinstance(c, Real) and not isinstance(c, bool) for c in box):
            raise ValueError(f"`word_boxes` entry {index} ({word!r:.30}) needs a box of 4 numbers [x0, y0, x1, y1]; "
                             f"got {box!r:.60}.")
        box = [int(c) for c in box]
        if not all(0 <= c <= LAYOUT_RANGE for c in box) or box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"`word_boxes` entry {index} ({word!r:.30}) has box {box}; coordinates must be in "
                             f"0–{LAYOUT_RANGE} (thousandths of the page) with x0 <= x1 and y0 <= y1.")
        words.append(word)
        boxes.append(box)
    return words, boxes
