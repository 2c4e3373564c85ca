"""Every implemented task through the server's app (in process): concurrent requests, merged by the batcher,
each answer what transformers' pipeline gives that request alone. A task without a row here is skipped with
a message: add its row (tiny checkpoint, inputs, parameters) when its pipeline lands."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

import inferline
from parity.compare import assert_same

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
}


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
        return [oracle(x, **parameters) for x in inputs]
    chat = inferline.pipeline("text-generation", model=str(path), device="cpu")
    return [x + [{"role": "assistant", "content": chat(x, return_full_text=False, **parameters)[0]["generated_text"]}]
            for x in inputs]


@pytest.mark.parametrize("task", inferline.PIPELINE_REGISTRY.implemented_tasks())
def test_each_task_answers_as_transformers(task, checkpoint, tmp_path):
    if task not in CASES:
        pytest.skip(f"no serving case for {task!r} yet: add a row to CASES in {__file__}")
    name, (arch, head, overrides), inputs, parameters = CASES[task]
    path = checkpoint(arch, head, **overrides)
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
        assert_same([r.json() for r in responses], expected)
        metrics = client.get("/metrics").text
        assert "inferline_batch_size_count" in metrics
        assert client.post("/", json={"inputs": inputs[0], "parameters": {"no_such_parameter": 1}}).status_code == 422
