"""Vision pipelines, inferline vs transformers 4.57.6, on the same checkpoint and images in one run.

    python bench/bench_vision.py --quick     # smoke run
    python bench/bench_vision.py             # full run

A ViT-base-shaped image classifier (google/vit-base-patch16-224's config, random seeded weights, 1000
labels) is built once with transformers and cached. Inputs are synthetic 640x480 photos-like PIL images.
Rows: image-classification images/s at batch_size 1 and 16 (preprocessing included), and the image
processor alone (images/s), since it is often the bottleneck. Ratios > 1 mean inferline is better.
Object detection (DETR-R50) has no row yet: inferline's object-detection pipeline is not implemented.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import CACHE, LIBS, Rows, best_of, finish_machine, machine, make_pipeline, save, table

PROCESSOR = {"image_processor_type": "ViTImageProcessor", "size": {"height": 224, "width": 224}, "resample": 2,
             "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def build_checkpoint() -> Path:
    folder = CACHE / "vit-base-image-classification-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    config = transformers.ViTConfig(num_labels=1000)  # 768 hidden, 12 layers, 12 heads, patch 16, 224 px
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    tmp.rename(folder)
    return folder


def images(n: int, seed: int = 0) -> list:
    import PIL.Image

    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    info = machine(args.threads)
    path = build_checkpoint()
    rows, notes = Rows(), []
    pipes = {lib: make_pipeline(lib, "image-classification", path) for lib in LIBS}
    repeats = 2 if args.quick else 3
    for batch_size, count in ((1, 4 if args.quick else 8), (16, 16 if args.quick else 32)):
        inputs = images(count, seed=batch_size)
        result = best_of({lib: (lambda p=pipes[lib]: p(inputs, batch_size=batch_size, top_k=1)) for lib in LIBS},
                         repeats)
        ours, theirs = result["outputs"]["inferline"], result["outputs"]["transformers"]
        same = sum(a[0]["label"] == b[0]["label"] for a, b in zip(ours, theirs))
        rows.add(f"image-classification ViT-base bs {batch_size}", "images/s",
                 {lib: count / result["best_s"][lib] for lib in LIBS}, "higher",
                 {"agreement": f"{same}/{count} top labels equal"})
    inputs = images(16, seed=99)
    processors = {"transformers": pipes["transformers"].image_processor, "inferline": pipes["inferline"].image_processor}
    result = best_of({"transformers": lambda: processors["transformers"](images=inputs, return_tensors="pt"),
                      "inferline": lambda: processors["inferline"](inputs)}, repeats)
    diff = float((result["outputs"]["inferline"]["pixel_values"]
                  - result["outputs"]["transformers"]["pixel_values"]).abs().max())
    rows.add("image processor alone (ViT, 640x480 → 224)", "images/s", {lib: 16 / result["best_s"][lib] for lib in LIBS},
             "higher", {"agreement": f"max |pixel_values difference| {diff:.1e}"})
    notes.append("object-detection (DETR-ResNet-50): no row — inferline's object-detection is not implemented yet.")
    report = {"machine": finish_machine(info), "rows": rows.rows, "notes": notes}
    save(report, table("Vision pipelines (CPU)", report), "vision", args.quick)


if __name__ == "__main__":
    main()
