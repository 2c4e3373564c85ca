"""Every implemented task through the server's app (in process): concurrent requests, merged by the batcher,
each answer what transformers' pipeline gives that request alone. A task without a row here is skipped with
a message: add its row (tiny checkpoint, inputs, parameters) when its pipeline lands."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

import inferline
from inferline.serve.app import jsonable
from parity.compare import assert_same


def _png_base64(size) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90) if size[0] > size[1] else (10, 160, 240)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


NLI = dict(id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
           label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
TEXTS = ["I love this movie! It was absolutely wonderful.", "The weather today is terrible.", "Paris"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GREEDY = {"max_new_tokens": 5, "do_sample": False}

# task → (served task name, (arch, head, config overrides), [inputs of concurrent requests], parameters)
CASES = {
    "text-classification": ("sentiment-analysis", ("distilbert", "sequence-classification", {}), TEXTS,
                            {"top_k": 2}),
    "token-classification": ("ner", ("bert", "token-classification", {}),
                             ["My name is Wolfgang and I live in Berlin", "Hugging Face is in New York City", "hi"],
                             {"aggregation_strategy": "simple"}),
    "question-answering": ("question-answering", ("bert", "question-answering", {}),
                           [{"question": "Where do I live?", "context": "My name is Wolfgang and I live in Berlin"},
                            {"question": "Who?", "context": " ".join(TEXTS * 20)},  # several windows
                            {"question": "What?", "context": "Nothing at all."}], {"doc_stride": 16,
                                                                                    "max_seq_len": 48}),
    "fill-mask": ("fill-mask", ("bert", "masked-lm", {}), ["Paris is the [MASK] of France.", "I [MASK] it.",
                                                         ["A [MASK] day.", "The [MASK]."]], {"top_k": 3}),
    "feature-extraction": ("feature-extraction", ("bert", "base", {}), TEXTS, {}),
    "zero-shot-classification": ("zero-shot-classification", ("bert", "sequence-classification", NLI), TEXTS,
                                 {"candidate_labels": ["cinema", "weather", "travel"]}),
    "text-generation": ("text-generation", ("gpt2", "causal-lm", {}), [t[:20] for t in TEXTS], GREEDY),
    "text2text-generation": ("text2text-generation", ("t5", "seq2seq-lm", {}), TEXTS, GREEDY),
    "summarization": ("summarization", ("bart", "seq2seq-lm", {}), [" ".join(TEXTS), TEXTS[0], TEXTS[1]],
                      {"max_new_tokens": 5, "num_beams": 1}),
    "translation": ("translation_en_to_fr", ("marian", "seq2seq-lm", {}), TEXTS, {"max_new_tokens": 6}),
    # transformers 4.57.6 has no conversational pipeline: its answer is our text-generation chat reply.
    "conversational": ("conversational", ("qwen2", "causal-lm", {}),
                       [[{"role": "user", "content": t}] for t in TEXTS], GREEDY),
    # Image and audio tasks: the model is ("vision", arch, head) for tests/fixtures/vision_checkpoints.py; inputs
    # IMAGES / AUDIO are files written per test, sent as paths (JSON) and once more as a raw body.
    "image-classification": ("image-classification", ("vision", "vit", "image-classification"), "IMAGES",
                             {"top_k": 3}),
    "image-feature-extraction": ("image-feature-extraction", ("vision", "vit", "base"), "IMAGES", {}),
    "zero-shot-image-classification": ("zero-shot-image-classification",
                                       ("vision", "clip", "zero-shot-image-classification"), "IMAGES",
                                       {"candidate_labels": ["cat", "dog", "car"]}),
    "object-detection": ("object-detection", ("vision", "detr", "object-detection"), "IMAGES", {"threshold": 0.0}),
    "depth-estimation": ("depth-estimation", ("vision", "depth_anything", "depth-estimation"), "IMAGES", {}),
    "zero-shot-object-detection": ("zero-shot-object-detection", ("vision", "owlvit", "zero-shot-object-detection"),
                                   "IMAGES", {"candidate_labels": ["cat", "dog"], "threshold": 0.3}),
    "image-to-text": ("image-to-text", ("vision", "vit-gpt2", "vision2seq"), "IMAGES", {"max_new_tokens": 4}),
    "image-segmentation": ("image-segmentation", ("vision", "detr-panoptic", "image-segmentation"), "IMAGES",
                           {"threshold": 0.0, "mask_threshold": 0.1}),
    "audio-classification": ("audio-classification", ("wav2vec2", "audio-classification", {}), "AUDIO",
                             {"top_k": 2}),
    "automatic-speech-recognition": ("automatic-speech-recognition", ("whisper-en", "speech-seq2seq", {}), "AUDIO",
                                     {"generate_kwargs": {"num_beams": 1, "max_new_tokens": 5}}),
    "table-question-answering": ("table-question-answering", ("tapas-wtq", "table-question-answering", {}),
                                 [{"table": {"City": ["Paris", "Rome"], "Founded": ["52 BC", "753 BC"]},
                                   "query": ["Which city?", "How old is Rome?"]},
                                  {"table": {"n": ["1", "2", "3"]}, "query": "the sum"},
                                  {"table": {"Year": ["1999", "2001"], "Event": ["first flight", ""]},
                                   "query": "When?"}], {}),
    # a document given as word boxes (JSON lists), long enough for several windows
    "document-question-answering": ("document-question-answering",
                                    ("vision", "layoutlm", "document-question-answering"),
                                    [{"image": None, "question": q, "word_boxes": [[f"w{i % 7}", [i, i, i + 5, i + 9]]
                                                                                   for i in range(n)]}
                                     for q, n in (("What?", 40), ("Which one is it?", 3), ("Who?", 90))],
                                    {"top_k": 2, "max_seq_len": 48, "doc_stride": 16}),
    # images as base64 PNGs (JSON-friendly) of two sizes, each with its question
    "visual-question-answering": ("vqa", ("vision", "vilt", "visual-question-answering"),
                                  [{"image": _png_base64(size), "question": q} for size, q in
                                   [((40, 30), "What colour is it?"), ((24, 48), "Is it red?"), ((40, 30), "Where?")]],
                                  {"top_k": 2}),
}
MEDIA_TYPES = {"IMAGES": "image/png", "AUDIO": "audio/wav"}


def _media_files(kind: str, folder) -> list[str]:
    """Three files of different sizes / lengths, as paths (the server reads them as a pipeline would)."""
    paths = []
    if kind == "IMAGES":
        from fixtures.images import make_image

        for i, (w, h) in enumerate([(64, 48), (37, 91), (64, 48)]):
            make_image(w, h, "RGB", i).save(folder / f"image{i}.png")
            paths.append(str(folder / f"image{i}.png"))
    else:
        import soundfile

        from fixtures.audio import signal

        for i, seconds in enumerate((1.0, 0.3, 0.7)):
            soundfile.write(folder / f"audio{i}.wav", signal(seconds, seed=i), 16000)
            paths.append(str(folder / f"audio{i}.wav"))
    return paths


def _decoded(x):
    """transformers reads audio files through an ffmpeg binary (none here): give it the decoded samples."""
    if isinstance(x, str) and x.endswith(".wav"):
        import soundfile

        samples, rate = soundfile.read(x, dtype="float32")
        return {"raw": samples, "sampling_rate": rate}
    return x


def _model(spec, checkpoint):
    if spec[0] == "vision":
        from fixtures.vision_checkpoints import build_vision

        return build_vision(*spec[1:])
    arch, head, overrides = spec
    return checkpoint(arch, head, **overrides)


@pytest.fixture(scope="module", autouse=True)
def tapas_oracle_on_pandas3():
    from parity.tapas_oracle import run_on_pandas3

    run_on_pandas3()  # transformers' TAPAS tokenizer crashes on pandas 3 without it


@pytest.fixture(scope="module", autouse=True)
def quiet():
    logging.getLogger("transformers").setLevel(logging.ERROR)


def _client(pipe):
    from starlette.testclient import TestClient

    from inferline.serve import build_app
    from inferline.serve.app import Settings

    return TestClient(build_app(pipe, Settings(max_batch_size=8, max_wait_ms=100)))


def _expected(task, path, inputs, parameters, tmp_path):
    if task != "conversational":
        import transformers

        oracle = transformers.pipeline(task, model=str(path), device="cpu")
        return [oracle(_decoded(x), **parameters) for x in inputs]
    chat = inferline.pipeline("text-generation", model=str(path), device="cpu")
    return [x + [{"role": "assistant", "content": chat(x, return_full_text=False, **parameters)[0]["generated_text"]}]
            for x in inputs]


@pytest.mark.parametrize("task", inferline.PIPELINE_REGISTRY.implemented_tasks())
def test_each_task_answers_as_transformers(task, checkpoint, tmp_path):
    if task not in CASES:
        pytest.skip(f"no serving case for {task!r} yet: add a row to CASES in {__file__}")
    name, spec, inputs, parameters = CASES[task]
    path = _model(spec, checkpoint)
    media = MEDIA_TYPES.get(inputs) if isinstance(inputs, str) else None
    if media:
        inputs = _media_files(inputs, tmp_path)
    if task == "conversational":
        import json
        import shutil

        folder = tmp_path / "model"
        shutil.copytree(path, folder)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHAT_TEMPLATE}))
        path = folder
    expected = _expected(name, path, inputs, parameters, tmp_path)
    with _client(inferline.pipeline(name, model=str(path), device="cpu")) as client:
        with ThreadPoolExecutor(len(inputs)) as pool:
            responses = list(pool.map(lambda x: client.post("/", json={"inputs": x, "parameters": parameters}),
                                      inputs))
        assert [r.status_code for r in responses] == [200] * len(inputs), [r.text for r in responses]
        assert_same([r.json() for r in responses], jsonable(expected))  # as the server writes them (PNG base64)
        metrics = client.get("/metrics").text
        assert "inferline_batch_size_count" in metrics
        assert client.post("/", json={"inputs": inputs[0], "parameters": {"no_such_parameter": 1}}).status_code == 422
        if media and not parameters.get("candidate_labels"):  # a raw file body: the input itself, default parameters
            with open(inputs[0], "rb") as file:
                raw = client.post("/", content=file.read(), headers={"content-type": media})
            assert raw.status_code == 200, raw.text
            assert_same(raw.json(), jsonable(_expected(name, path, inputs[:1], {}, tmp_path)[0]))
