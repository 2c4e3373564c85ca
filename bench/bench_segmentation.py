"""image-segmentation, inferline vs transformers 4.57.6, on the same checkpoint and images in one run.

    python bench/bench_segmentation.py --quick     # smoke run
    python bench/bench_segmentation.py             # full run

A SegFormer-b0-shaped semantic segmenter (nvidia/segformer-b0-finetuned-ade-512-512's config: 150 labels,
random seeded weights, its legacy preprocessor_config.json) is built once with transformers and cached.
Inputs are synthetic 640x480 images (resized to 512x512; masks come back at 640x480). Rows: images/s at
batch_size 1 and 4, preprocessing and post-processing included. Ratios > 1 mean inferline is better.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _common import CACHE, LIBS, Rows, best_of, finish_machine, make_pipeline, save, start, table
from bench_vision import images


def build_segformer() -> Path:
    folder = CACHE / "segformer-b0-semantic-segmentation-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    config = transformers.SegformerConfig(num_labels=150)  # the b0 shape
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(config)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "SegformerFeatureExtractor", "size": 512, "reduce_labels": True, "resample": 2,
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    tmp.rename(folder)
    return folder


def main() -> None:
    args, info = start()
    rows, repeats, count = Rows(), 2 if args.quick else 3, 4 if args.quick else 8
    pipes = {lib: make_pipeline(lib, "image-segmentation", build_segformer()) for lib in LIBS}
    for batch_size in (1, 4):
        inputs = images(count, seed=20 + batch_size)
        result = best_of({lib: (lambda p=pipes[lib]: p(inputs, batch_size=batch_size)) for lib in LIBS}, repeats)
        ours, theirs = result["outputs"]["inferline"], result["outputs"]["transformers"]
        labels = sum([x["label"] for x in a] == [y["label"] for y in b] for a, b in zip(ours, theirs))
        pixels = sum(int((np.asarray(x["mask"]) != np.asarray(y["mask"])).sum())
                     for a, b in zip(ours, theirs) for x, y in zip(a, b))
        rows.add(f"image-segmentation SegFormer-b0 bs {batch_size} (640x480 → 512x512)", "images/s",
                 {lib: count / result["best_s"][lib] for lib in LIBS}, "higher",
                 {"agreement": f"{labels}/{count} images with equal labels; {pixels} mask pixels differ"})
    report = {"machine": finish_machine(info), "rows": rows.rows, "notes": []}
    save(report, table("image-segmentation (CPU)", report), "segmentation", args.quick)


if __name__ == "__main__":
    main()
