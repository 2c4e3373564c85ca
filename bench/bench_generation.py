"""Generation, inferline vs transformers 4.57.6: the same token ids through `generate` on the same checkpoints.

    python bench/bench_generation.py --quick              # smoke run, ~2 minutes
    python bench/bench_generation.py                      # full run, best of 3, under 10 minutes
    python bench/bench_generation.py --only t5            # one model (gpt2, llama, t5)
    python bench/bench_generation.py --profile llama      # cProfile of inferline's bs-8 greedy decode

Three random-weight checkpoints are built once with transformers and cached: GPT-2 124M (GPT2Config's
defaults), a ~75M Llama (hidden 768, 8 layers, 12 heads, 4 KV heads, tied embeddings, vocab 32000) and a
t5-small (T5Config's defaults). Their tokenizers are small BPE/unigram vocabularies trained on the fixture
corpus: the models' vocabularies are full size, ids past the tokenizer's are simply never typed in.
Rows compare `inferline.generation.generate(model, ids, mask, config)` with transformers'
`model.generate(ids, attention_mask=mask, **kwargs)` (same kwargs, min_new_tokens = max_new_tokens so both
produce exactly as many tokens), plus one pipeline row per task. Ratios: > 1 means inferline is faster.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from _common import CACHE, LIBS, Rows, best_of, finish_machine, fixtures, machine, make_pipeline, save, \
    save_checkpoint, sentences, table

PROMPT_TOKENS = (16, 48, 32, 64, 24, 40, 56, 8)  # the 8 prompts' lengths (decoders), left padded in a batch
NEW_TOKENS = 64  # decoders
SUMMARY_TOKENS = 32  # t5
T5_BEAM = dict(num_beams=4, no_repeat_ngram_size=3, length_penalty=2.0, early_stopping=True)  # t5-small's summarization
DECODERS = ("gpt2", "llama")


# ----- checkpoints -----
def build_checkpoint(name: str) -> Path:
    """The seeded random-weight checkpoint `name` (gpt2, llama, t5) with a corpus-trained tokenizer; cached."""
    folder = CACHE / f"generation-{name}-v2"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    fx = fixtures()
    if name == "gpt2":
        tokenizer = fx.gpt2_tokenizer(vocab_size=1000)
        tokenizer.pad_token = tokenizer.eos_token  # so transformers' pipeline can batch,
        tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"  # as decoders need (GPT-2: right)
        tokenizer.model_max_length = 1024
        config = transformers.GPT2Config(bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
        auto = transformers.AutoModelForCausalLM
    elif name == "llama":
        tokenizer = fx.llama_tokenizer(vocab_size=1000)
        tokenizer.model_max_length = 2048
        config = transformers.LlamaConfig(vocab_size=32000, hidden_size=768, num_hidden_layers=8,
                                          num_attention_heads=12, num_key_value_heads=4, intermediate_size=2048,
                                          tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
        auto = transformers.AutoModelForCausalLM
    else:
        tokenizer = fx._t5_tokenizer()
        config = transformers.T5Config(decoder_start_token_id=0)  # t5-small: 512, 6 layers, 8 heads, 2048, 32128
        auto = transformers.AutoModelForSeq2SeqLM
    torch.manual_seed(0)
    return save_checkpoint(folder, auto.from_config(config), tokenizer)


def load_models(path: Path, head: str) -> dict:
    import transformers

    from inferline.models.registry import load_model

    auto = transformers.AutoModelForCausalLM if head == "causal-lm" else transformers.AutoModelForSeq2SeqLM
    return {"transformers": auto.from_pretrained(path).eval(), "inferline": load_model(path, head)}


# ----- workloads -----
def token_rows(path: Path, lengths, seed: int) -> list[list[int]]:
    """One row of token ids per length, cut from corpus text encoded by the checkpoint's tokenizer."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    rows = []
    for length, text in zip(lengths, sentences(len(lengths), seed, words=(400, 500))):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) < length:
            raise RuntimeError(f"corpus text too short for a {length}-token prompt")
        rows.append(ids[:length])
    return rows


def padded(rows: list[list[int]], pad: int, side: str):
    """(ids, mask) (B, longest), padded on `side`."""
    import torch

    width = max(map(len, rows))
    fill = [[pad] * (width - len(r)) for r in rows]
    ids = [f + r if side == "left" else r + f for f, r in zip(fill, rows)]
    mask = [[0] * len(f) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * len(f) for f, r in zip(fill, rows)]
    return torch.tensor(ids), torch.tensor(mask)


def generate_calls(models: dict, batches: list, kwargs: dict, new_tokens: int | None = None) -> dict:
    """Per library, a call that runs `generate` over every (ids, mask) batch with the same kwargs
    (`new_tokens`: that many instead, for a cheap warm-up)."""
    import torch

    from inferline.generation import GenerationConfig, generate

    theirs, ours = models["transformers"], models["inferline"]
    if new_tokens is not None:
        kwargs = {**kwargs, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens}

    def transformers_call():
        with torch.inference_mode():
            return [theirs.generate(ids, attention_mask=mask, **kwargs) for ids, mask in batches]

    def inferline_call():
        config = GenerationConfig.for_model(ours).update(**kwargs)
        return [generate(ours, ids, mask, config) for ids, mask in batches]

    return {"transformers": transformers_call, "inferline": inferline_call}


def timed_generate(models: dict, batches: list, kwargs: dict, repeats: int) -> dict:
    """best_of over generate_calls, warmed up by a 4-token generation of the same batches."""
    warm = generate_calls(models, batches, kwargs, new_tokens=4)
    return best_of(generate_calls(models, batches, kwargs), repeats, warmup=lambda lib: warm[lib]())


def agreement(outputs: dict) -> str:
    """How many output rows are token-identical (shape mismatch counts the whole batch as differing)."""
    same = total = 0
    for a, b in zip(outputs["transformers"], outputs["inferline"]):
        total += a.shape[0]
        if a.shape == b.shape:
            same += int((a == b).all(1).sum())
    return f"{same}/{total} token-identical sequences"


def text_agreement(outputs: dict) -> str:
    a, b = outputs["transformers"], outputs["inferline"]
    same = sum(x == y for x, y in zip(a, b))
    return f"{same}/{len(a)} identical texts"


# ----- rows -----
def decoder_rows(name: str, rows: Rows, repeats: int, quick: bool) -> None:
    path = build_checkpoint(name)
    models = load_models(path, "causal-lm")
    pad = models["inferline"].config.eos_token_id
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=pad)
    prompts = token_rows(path, PROMPT_TOKENS, seed=1)
    singles = prompts[:2] if quick else prompts[:4]
    cases = [(f"{name} greedy bs=1 ({len(singles)} prompts of {'/'.join(str(len(p)) for p in singles)} tokens)",
              [padded([p], pad, "left") for p in singles], len(singles)),
             (f"{name} greedy bs=8 (prompts of 8-64 tokens, left padded)", [padded(prompts, pad, "left")], 8)]
    for label, batches, n in cases:
        result = timed_generate(models, batches, kwargs, repeats)
        tokens = {lib: n * NEW_TOKENS / t for lib, t in result["best_s"].items()}
        rows.add(label, "new tokens/s", tokens, "higher",
                 {"times_s": result["times_s"], "agreement": agreement(result["outputs"])})
    if name == "gpt2":  # the same decoding through both text-generation pipelines
        del models
        texts = sentences(8, seed=2, words=(6, 40))
        pipes = {lib: make_pipeline(lib, "text-generation", path) for lib in LIBS}
        call = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, batch_size=8)
        result = best_of({lib: (lambda p=p: [o[0]["generated_text"] for o in p(texts, **call)])
                          for lib, p in pipes.items()}, repeats)
        rows.add("gpt2 pipeline('text-generation') bs=8 (8 texts of 6-40 words)", "new tokens/s",
                 {lib: 8 * NEW_TOKENS / t for lib, t in result["best_s"].items()}, "higher",
                 {"times_s": result["times_s"], "agreement": text_agreement(result["outputs"])})


def t5_rows(rows: Rows, repeats: int, quick: bool) -> None:
    import random

    path = build_checkpoint("t5")
    models = load_models(path, "seq2seq-lm")
    rng = random.Random(3)
    inputs = [ids[:-1] + [1] for ids in token_rows(path, [rng.randint(100, 200) for _ in range(8)], seed=4)]  # + </s>
    base = dict(max_new_tokens=SUMMARY_TOKENS, min_new_tokens=SUMMARY_TOKENS)
    settings = [("beam 4, no_repeat_ngram 3", {**base, **T5_BEAM})] + ([] if quick else [("greedy", base)])
    for label, kwargs in settings:
        for bs in (1, 8):
            n = 2 if bs == 1 and (quick or label != "greedy") else 8
            batches = [padded(inputs[i:i + bs], 0, "right") for i in range(0, n, bs)]
            result = timed_generate(models, batches, kwargs, repeats)
            rows.add(f"t5-small {label} bs={bs} (inputs of 100-200 tokens, {SUMMARY_TOKENS} new)", "inputs/s",
                     {lib: n / t for lib, t in result["best_s"].items()}, "higher",
                     {"times_s": result["times_s"], "agreement": agreement(result["outputs"])})
    del models
    texts = ["summarize: " + t for t in sentences(8, seed=5, words=(60, 110))]
    pipes = {lib: make_pipeline(lib, "summarization", path) for lib in LIBS}
    call = dict(**base, **T5_BEAM, batch_size=8)
    result = best_of({lib: (lambda p=p: [o["summary_text"] for o in p(texts, **call)]) for lib, p in pipes.items()},
                     repeats)
    rows.add("t5-small pipeline('summarization') beam 4 bs=8 (8 texts of 60-110 words)", "inputs/s",
             {lib: 8 / t for lib, t in result["best_s"].items()}, "higher",
             {"times_s": result["times_s"], "agreement": text_agreement(result["outputs"])})


def run(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    repeats = 1 if args.quick else args.repeats
    info = machine(args.threads)
    rows = Rows()
    for name in args.only:
        print(f"{name}:", file=sys.stderr)
        t5_rows(rows, repeats, args.quick) if name == "t5" else decoder_rows(name, rows, repeats, args.quick)
    return {"repeats": repeats, "models": list(args.only), "machine": finish_machine(info), "rows": rows.rows,
            "checkpoints": {name: str(build_checkpoint(name)) for name in args.only}}


def title(report: dict) -> str:
    return (f"generation: GPT-2 124M, Llama ~75M (GQA 12/4), t5-small, random weights; greedy and beam "
            f"decoding through `generate`, best of {report['repeats']}")


def profile(args) -> None:
    """cProfile inferline's bs-8 decode of one model (after a warm-up), top 30 by total time."""
    import cProfile
    import pstats

    import torch

    from inferline.generation import GenerationConfig, generate
    from inferline.models.registry import load_model

    torch.set_num_threads(args.threads)
    name = args.profile
    path = build_checkpoint(name)
    if name == "t5":
        model = load_model(path, "seq2seq-lm")
        ids, mask = padded(token_rows(path, [150] * 8, seed=4), 0, "right")
        config = GenerationConfig.for_model(model).update(max_new_tokens=SUMMARY_TOKENS,
                                                          min_new_tokens=SUMMARY_TOKENS, **T5_BEAM)
    else:
        model = load_model(path, "causal-lm")
        pad = model.config.eos_token_id
        ids, mask = padded(token_rows(path, PROMPT_TOKENS, seed=1), pad, "left")
        config = GenerationConfig.for_model(model).update(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                                          pad_token_id=pad)
    generate(model, ids, mask, config)
    profiler = cProfile.Profile()
    profiler.runcall(generate, model, ids, mask, config)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both libraries (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per row (best is kept)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, fewer bs-1 prompts, no t5 greedy rows")
    parser.add_argument("--only", nargs="+", choices=(*DECODERS, "t5"), default=[*DECODERS, "t5"])
    parser.add_argument("--profile", choices=(*DECODERS, "t5"), help="profile inferline's bs-8 decode of a model")
    args = parser.parse_args()
    if args.profile:
        profile(args)
        return
    report = run(args)
    save(report, table(title(report), report), "generation", args.quick)


if __name__ == "__main__":
    main()
