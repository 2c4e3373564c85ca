"""visual-question-answering (alias vqa): the likeliest answers to a question about an image, with a ViLT-style
classifier over a fixed answer vocabulary.

>>> vqa = pipeline("visual-question-answering", model="dandelin/vilt-b32-finetuned-vqa")
>>> vqa("cats.png", "How many cats are there?", top_k=2)
[{'score': 0.9..., 'answer': '2'}, {'score': 0.0..., 'answer': ...}]

Inputs as transformers 4.57.6 takes them: `pipe(image, question)`, `pipe(image=..., question=...)`,
`{"image", "question"}` dicts and lists of them, a list of images with one question, one image with a
list of questions, or both lists (every question for every image, question by question); generators too.
Scores are independent sigmoids. Images of different sizes batch correctly (transformers 4.57.6 crashes): a
batch holds images of one processed size; where the model keeps a random subset of patches (ViLT with a
positive max_image_length, see models/vilt.py), only consecutive ones, in input order, so that its draws come
in the order unbatched calls make them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from .base import Pipeline, _is_dataset
from .text import check_text, check_truncation, encode, encoding_tensors
from .vision import ImagePipelineMixin, SameSizeBatches

PADDING = (True, False, "longest", "max_length", "do_not_pad")


def _is_image(value) -> bool:
    """One image in any form load_image takes (not a dict, list or generator)."""
    if isinstance(value, (str, bytes, bytearray, os.PathLike, np.ndarray, torch.Tensor)):
        return True
    return type(value).__module__.startswith("PIL.")


def pair_inputs(image, question):
    """The call's `image` and `question` → one {"image", "question"} dict, a list of them, or an iterator
    (transformers' forms: image × question lists pair every question with every image, question first)."""
    if image is None:
        raise ValueError("visual-question-answering needs an image and a question: pipe(image, question), "
                         "pipe(image=..., question=...) or pipe({'image': ..., 'question': ...}).")
    images = isinstance(image, (list, tuple)) and all(_is_image(i) for i in image)  # [] too: an empty-list error
    if question is None:
        if _is_image(image) or images:
            raise ValueError("visual-question-answering needs a `question` for the image(s): pipe(image, question) "
                             "or pipe({'image': ..., 'question': ...}).")
        return image  # dicts, a list of them, a generator or a dataset
    many = isinstance(question, (list, tuple))
    if not isinstance(question, str) and not (many and all(isinstance(q, str) for q in question)):
        raise TypeError(f"`question` must be a string or a list of strings; got {type(question).__name__}: "
                        f"{question!r:.60}.")
    if _is_image(image):
        return [{"image": image, "question": q} for q in question] if many else {"image": image, "question": question}
    if images:
        return [{"image": im, "question": q} for q in question for im in image] if many else \
            [{"image": im, "question": question} for im in image]
    if not many and isinstance(image, Iterator):  # lazily, answers as a generator
        return ({"image": im, "question": question} for im in image)
    if not many and _is_dataset(image):  # a list, as transformers pairs a KeyDataset
        return [{"image": image[i], "question": question} for i in range(len(image))]
    raise ValueError(f"`question` was given with inputs of type {type(image).__name__}, which are not images; give "
                     f"dicts with their own 'question', or images with `question`.")


class VisualQuestionAnsweringPipeline(SameSizeBatches, ImagePipelineMixin, Pipeline):
    """Answer questions about images: `top_k` (5, capped at the number of answers), `timeout`, and the
    tokenizer's `truncation` (over-long questions are cut to the model's limit with a warning; False: an
    error) and `padding` (accepted; batches are padded per batch, which never changes the answers)."""

    needs_tokenizer = True
    sort_by_length = False  # rows in input order: the model may draw patches row by row (see the module doc)

    def __call__(self, image=None, question=None, **kwargs):
        if "images" in kwargs:  # the image pipelines' keyword
            if image is not None:
                raise ValueError("Pass the image either as `image` or as `images=`, not both.")
            image = kwargs.pop("images")
        return super().__call__(pair_inputs(image, question), **kwargs)

    def _sanitize_parameters(self, top_k=None, padding=None, truncation=None, timeout=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for visual-question-answering: {sorted(unknown)}. Accepted: top_k, "
                            f"padding, truncation, timeout.")
        pre, post = {}, {}
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
                raise ValueError(f"`top_k` must be a positive integer; got {top_k!r}.")
            post["top_k"] = top_k
        padding = getattr(padding, "value", padding)  # transformers' PaddingStrategy enum
        if padding is not None and not any(padding is p or padding == p for p in PADDING):
            raise ValueError(f"`padding` must be one of {PADDING}; got {padding!r}.")
        if truncation is not None:
            pre["truncation"] = check_truncation(truncation)
        if timeout is not None:
            pre["timeout"] = timeout
        return pre, {}, post

    def preprocess(self, item, truncation=None, timeout=None):
        if not isinstance(item, dict):
            raise TypeError(f"A visual-question-answering input must be a dict with 'image' and 'question' (or call "
                            f"pipe(image, question)); got {type(item).__name__}: {item!r:.60}.")
        for key in ("image", "question"):
            if item.get(key) is None:
                raise ValueError(f"A visual-question-answering input has no {key!r}; each dict needs 'image' and "
                                 f"'question'. Got keys {sorted(item)}.")
        question = check_text(item["question"], "question")
        pixels = self.pixel_inputs(item["image"], timeout)[0]  # pixel_values (3, H, W), pixel_mask (H, W)
        text = encoding_tensors(encode(self, question, truncation=truncation), self.model.input_names)
        return {**text, **pixels}

    @property
    def in_order_batches(self) -> bool:
        # where the model keeps a random subset of patches, its draws must follow one another as unbatched calls'
        return getattr(self.model, "samples_patches", False)

    def _forward(self, model_inputs):
        return {"logits": self.model(**self.model_dtype_inputs(model_inputs))}  # (B, answers)

    def postprocess(self, model_outputs, top_k=5):
        config = self.model.config
        scores, ids = model_outputs["logits"][0].float().sigmoid().topk(min(top_k, config.num_labels))
        return [{"score": score, "answer": config.id2label[i]} for score, i in zip(scores.tolist(), ids.tolist())]
