"""image-to-text, inferline vs transformers 4.57.6: captions/s on the same checkpoint and images in one run.

    python bench/bench_image_to_text.py --quick     # smoke run
    python bench/bench_image_to_text.py             # full run, best of 3

A ydshieh/vit-gpt2-coco-en-shaped VisionEncoderDecoder (ViTConfig's defaults: 768 wide, 12 layers, 224 px,
patch 16; GPT2Config's defaults with cross-attention: 124M, vocab 50257) with random seeded weights is built
once with transformers and cached; its tokenizer is a small BPE trained on the fixture corpus (the ids past
it decode to nothing, as in bench_generation). Every caption is exactly NEW_TOKENS long (min_new_tokens =
max_new_tokens), so both libraries do the same work. Inputs are synthetic 640x480 PIL images; timings
include preprocessing and decoding. Ratios > 1 mean inferline is faster; each row's spread (slowest to
fastest repeat, captions/s) is in the notes.
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import CACHE, LIBS, Rows, best_of, finish_machine, fixtures, make_pipeline, save, start, table
from bench_vision import images

NEW_TOKENS = 16
PROCESSOR = {"image_processor_type": "ViTImageProcessor", "size": {"height": 224, "width": 224}, "resample": 2,
             "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def build_checkpoint() -> Path:
    folder = CACHE / "vit-gpt2-image-to-text-v2"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    tokenizer = fixtures().gpt2_tokenizer(vocab_size=1000)
    tokenizer.pad_token = tokenizer.eos_token  # transformers' pipeline batches only with a pad token
    decoder = transformers.GPT2Config(add_cross_attention=True, is_decoder=True)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(transformers.ViTConfig(), decoder)
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = decoder.eos_token_id
    torch.manual_seed(0)
    model = transformers.VisionEncoderDecoderModel(config)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    tmp.rename(folder)
    return folder


def token_agreement(pipes: dict, inputs: list, fixed: dict) -> str:
    """The captions' token ids, compared directly: the random model's ids mostly lie past the small tokenizer,
    so equal texts alone would say little."""
    import torch

    from inferline.generation import generate

    theirs, ours = pipes["transformers"], pipes["inferline"]
    pixels = theirs.image_processor(images=inputs, return_tensors="pt").pixel_values
    with torch.inference_mode():
        expected = theirs.model.generate(pixel_values=pixels, **fixed)
        config = ours.generation_config.update(**fixed)
        got = generate(ours.model, pixels, None, config)
    same = int((expected == got).all(1).sum()) if expected.shape == got.shape else 0
    return f"token ids of {len(inputs)} greedy captions generated directly: {same}/{len(inputs)} identical"


def main() -> None:
    args, info = start()
    pipes = {lib: make_pipeline(lib, "image-to-text", build_checkpoint()) for lib in LIBS}
    rows, notes = Rows(), []
    repeats = 2 if args.quick else 3
    fixed = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    workloads = [("greedy, bs 1", 2 if args.quick else 3, 1, {}),
                 ("greedy, bs 8", 8, 8, {}),
                 ("4 beams, bs 1", 1 if args.quick else 2, 1, {"num_beams": 4})]
    for name, count, batch_size, extra in workloads:
        inputs = images(count, seed=count + batch_size)
        kwargs = {"generate_kwargs": {**fixed, **extra}, "batch_size": batch_size}
        result = best_of({lib: (lambda p=pipes[lib]: p(inputs, **kwargs)) for lib in LIBS}, repeats)
        ours, theirs = result["outputs"]["inferline"], result["outputs"]["transformers"]
        same = sum(a == b for a, b in zip(ours, theirs))
        row = f"image-to-text ViT-GPT2 base, {NEW_TOKENS} tokens, {name}"
        rows.add(row, "captions/s", {lib: count / result["best_s"][lib] for lib in LIBS}, "higher",
                 {"agreement": f"{same}/{count} identical captions"})
        spread = {lib: sorted(count / t for t in result["times_s"][lib]) for lib in LIBS}
        ratios = sorted(o / t for o, t in zip(sorted(spread["inferline"]), sorted(spread["transformers"])))
        notes.append(f"{row}: captions/s per repeat, transformers {[round(v, 3) for v in spread['transformers']]}, "
                     f"inferline {[round(v, 3) for v in spread['inferline']]}; rank-matched ratios "
                     f"{ratios[0]:.2f}x-{ratios[-1]:.2f}x")
    notes.append(token_agreement(pipes, images(2, seed=5), fixed))
    report = {"machine": finish_machine(info), "rows": rows.rows, "notes": notes}
    save(report, table("image-to-text (CPU)", report), "image_to_text", args.quick)


if __name__ == "__main__":
    main()
