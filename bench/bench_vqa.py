"""visual-question-answering, inferline vs transformers 4.57.6, on the same checkpoint, images and questions.

    python bench/bench_vqa.py --quick     # smoke run
    python bench/bench_vqa.py             # full run

A ViLT-b32-shaped VQA model (ViltConfig defaults as dandelin/vilt-b32-finetuned-vqa: 768 hidden, 12 layers,
patch 32, 3129 answers; random seeded weights, the real bert-base-uncased vocabulary, 40 tokens) is built
once with transformers and cached, with that checkpoint's image processor (shortest edge 384, size_divisor
32). Inputs: synthetic 640x480 images (→ 384x512, 192 patches) with short questions. Rows: questions/s at
batch_size 1 and 8 (one image size: transformers cannot batch several), preprocessing included, and the
ViLT image processor alone (8 images a call). Agreement: equal top answers, and the largest score difference.
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import (CACHE, LIBS, Rows, best_of, finish_machine, fixtures, make_pipeline, save, save_checkpoint, start,
                     table)
from bench_vision import images, processor_row

PROCESSOR = {"feature_extractor_type": "ViltFeatureExtractor", "size": 384, "size_divisor": 32, "resample": 3,
             "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
QUESTIONS = ["How many cats are there?", "What colour is the car?", "Is there a dog in the picture?",
             "What is the man holding in his left hand?"]


def build_checkpoint() -> Path:
    folder = CACHE / "vilt-b32-vqa-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    config = transformers.ViltConfig(id2label={i: f"answer {i}" for i in range(3129)})
    torch.manual_seed(0)
    model = transformers.ViltForQuestionAnswering(config)
    with torch.no_grad():  # transformers initialises these to zeros; random values exercise the interpolation
        model.vilt.embeddings.position_embeddings.normal_(0, 0.02)
        model.vilt.embeddings.cls_token.normal_(0, 0.02)
    tokenizer = fixtures().wordpiece_tokenizer()
    tokenizer.model_max_length = 40
    return save_checkpoint(folder, model, tokenizer, {"preprocessor_config.json": json.dumps(PROCESSOR)})


def items(n: int, seed: int = 0) -> list:
    return [{"image": image, "question": QUESTIONS[i % len(QUESTIONS)]} for i, image in enumerate(images(n, seed))]


def agreement(ours: list, theirs: list) -> str:
    same = sum(a[0]["answer"] == b[0]["answer"] for a, b in zip(ours, theirs))
    diff = max(abs(x["score"] - y["score"]) for a, b in zip(ours, theirs) for x, y in zip(a, b))
    return f"{same}/{len(ours)} top answers equal, max |score difference| {diff:.1e}"


def main() -> None:
    args, info = start()
    path = build_checkpoint()
    rows = Rows()
    pipes = {lib: make_pipeline(lib, "visual-question-answering", path) for lib in LIBS}
    repeats = 2 if args.quick else 3
    for batch_size, count in ((1, 4 if args.quick else 8), (8, 8 if args.quick else 16)):
        inputs = items(count, seed=batch_size)
        result = best_of({lib: (lambda p=pipes[lib]: p(inputs, batch_size=batch_size, top_k=3)) for lib in LIBS},
                         repeats)
        rows.add(f"visual-question-answering ViLT-b32 bs {batch_size} (640x480 → 384x512)", "questions/s",
                 {lib: count / result["best_s"][lib] for lib in LIBS}, "higher",
                 {"agreement": agreement(result["outputs"]["inferline"], result["outputs"]["transformers"])})
    processor_row(rows, "image processor alone (ViLT, 640x480 → 384x512)", pipes, images(8, seed=9), repeats)
    report = {"machine": finish_machine(info), "rows": rows.rows, "notes": []}
    save(report, table("visual-question-answering (CPU)", report), "vqa", args.quick)


if __name__ == "__main__":
    main()
