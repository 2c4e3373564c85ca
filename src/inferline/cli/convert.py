"""`inferline convert <CTranslate2 dir> <out dir>`: a Hugging Face checkpoint transformers itself loads."""

from __future__ import annotations

HELP = "convert a CTranslate2 Whisper directory (faster-whisper's layout) into a Hugging Face checkpoint"


def add_arguments(parser) -> None:
    parser.add_argument("source", help="CTranslate2 model directory (model.bin or model.bin.part1…, config.json, "
                                       "tokenizer.json)")
    parser.add_argument("output", help="directory to write config.json, model.safetensors, tokenizer files, ...")


def main(args) -> int:
    from ..models.formats.ctranslate2 import write_hf_checkpoint

    out = write_hf_checkpoint(args.source, args.output)
    print(f"wrote a Hugging Face Whisper checkpoint to {out}")
    return 0
