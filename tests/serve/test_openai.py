"""The OpenAI-compatible routes of a real `inferline serve`, driven by the `openai` client package:
chat and text completions (greedy == transformers, stop, max_tokens, seed, streaming, batching) on a tiny
Qwen2 with a chat template, and embeddings of the real all-MiniLM-L6-v2 against sentence-transformers."""

from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fixtures.checkpoints import CORPUS, bert_vocab_dir
from fixtures.server import Server
from parity.compare import assert_same

TEMPLATE = ("{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
            "{{ raise_exception('Unknown role: ' + m['role']) }}{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Where is Paris?"}]
PROMPTS = [line[:n] for line, n in zip(CORPUS, (12, 30, 45, 20))]
NEW = 12  # max_tokens in these tests


@pytest.fixture(scope="module")
def chat_model(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-qwen2") / "model"
    shutil.copytree(checkpoint("qwen2", "causal-lm"), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TEMPLATE}))
    return folder


@pytest.fixture(scope="module")
def server(chat_model):
    server = Server("text-generation", chat_model, "--max-batch-size", "8", "--max-wait-ms", "150", "--workers", "2")
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def client(server):
    import openai

    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def oracle(chat_model):
    import transformers

    return transformers.pipeline("text-generation", model=str(chat_model), device="cpu")


def greedy(oracle, prompt) -> str:
    return oracle(prompt, do_sample=False, max_new_tokens=NEW, return_full_text=False)[0]["generated_text"]


def test_chat_completion_greedy_equals_transformers(client, oracle):
    reply = client.chat.completions.create(model="tiny", messages=CHAT, temperature=0, max_tokens=NEW)
    expected = greedy(oracle, CHAT)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-") and reply.model == "tiny"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected
    prompt_tokens = len(oracle.tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True))
    new_tokens = len(oracle.tokenizer(expected, add_special_tokens=False).input_ids)
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.total_tokens == prompt_tokens + reply.usage.completion_tokens
    assert choice.finish_reason == ("length" if reply.usage.completion_tokens == NEW else "stop")
    assert reply.usage.completion_tokens >= min(new_tokens, 1)


def test_text_completion_and_stop_strings(client, oracle):
    reply = client.completions.create(model="tiny", prompt=PROMPTS[1], temperature=0, max_tokens=NEW)
    expected = greedy(oracle, PROMPTS[1])
    assert reply.object == "text_completion" and reply.choices[0].text == expected
    stop = expected.strip()[2:5]  # a piece of what greedy decoding writes: the text must end just before it
    assert len(stop) == 3
    cut = client.completions.create(model="tiny", prompt=PROMPTS[1], temperature=0, max_tokens=NEW, stop=[stop])
    assert cut.choices[0].text == expected[:expected.find(stop)] and cut.choices[0].finish_reason == "stop"
    several = client.completions.create(model="tiny", prompt=PROMPTS[:2], temperature=0, max_tokens=NEW)
    assert [c.text for c in several.choices] == [greedy(oracle, p) for p in PROMPTS[:2]]
    assert [c.index for c in several.choices] == [0, 1]


def test_max_tokens_and_finish_reason(client):
    reply = client.completions.create(model="tiny", prompt=PROMPTS[0], temperature=0, max_tokens=1)
    assert reply.usage.completion_tokens <= 1
    assert reply.choices[0].finish_reason in ("length", "stop")


def test_sampling_with_a_seed_is_reproducible(client):
    def sample(seed):
        return client.completions.create(model="tiny", prompt=PROMPTS[2], temperature=1.0, top_p=0.9, seed=seed,
                                         max_tokens=NEW).choices[0].text

    first = sample(7)
    assert sample(7) == first
    assert len({first, sample(8), sample(9)}) > 1  # a random tiny model: three seeds give different texts


def test_streaming_one_chunk_per_token_ending_done(client, server):
    complete = client.chat.completions.create(model="tiny", messages=CHAT, temperature=0, max_tokens=NEW)
    chunks = list(client.chat.completions.create(model="tiny", messages=CHAT, temperature=0, max_tokens=NEW,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(pieces) == complete.choices[0].message.content
    assert 1 < len(pieces) <= complete.usage.completion_tokens  # one per token (bar partial characters, EOS)
    assert chunks[-1].choices[0].finish_reason == complete.choices[0].finish_reason
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    # The raw event stream ends with data: [DONE]; text completions stream too.
    with server.client.stream("POST", "/v1/completions", json={"prompt": PROMPTS[1], "temperature": 0,
                                                                "max_tokens": NEW, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["text"] for e in events[:-1])
    assert text == client.completions.create(model="tiny", prompt=PROMPTS[1], temperature=0,
                                             max_tokens=NEW).choices[0].text


def test_concurrent_completions_are_batched_and_equal_unbatched(client, server):
    def complete(prompt):
        return client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=NEW).choices[0].text

    alone = [complete(p) for p in PROMPTS]
    batches = server.metric("inferline_batch_size_count")
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(complete, PROMPTS))
    assert together == alone
    assert server.metric("inferline_batch_size_count") - batches < len(PROMPTS)


@pytest.mark.parametrize("body, field", [
    ({"messages": CHAT, "temperature": "hot"}, "temperature"),
    ({"messages": CHAT, "temperature": 3}, "temperature"),
    ({"messages": CHAT, "n": 2}, "n"),
    ({"messages": CHAT, "max_tokens": 0}, "max_tokens"),
    ({"messages": CHAT, "stop": [1]}, "stop"),
    ({"messages": CHAT, "seed": "x"}, "seed"),
    ({"messages": CHAT, "logit_bias": {}}, "logit_bias"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    ({}, "messages"),
])
def test_bad_chat_requests_are_422(server, body, field):
    response = server.post("/v1/chat/completions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_bad_completion_requests_are_422(server):
    response = server.post("/v1/completions", json={"prompt": [1, 2, 3]})
    assert response.status_code == 422 and response.json()["field"] == "prompt"
    response = server.post("/v1/completions", json={"prompt": PROMPTS[:2], "stream": True})
    assert response.status_code == 422
    response = server.post("/v1/chat/completions", json={"messages": [{"role": "tool", "content": "x"}]})
    assert response.status_code == 422 and "tool" in response.json()["error"]  # the template's own exception
    assert server.post("/v1/embeddings", json={"input": "x"}).status_code == 404


# ----- embeddings: the real all-MiniLM-L6-v2 -----
SENTENCES = ["A man is eating food.", "Someone is having a meal.", "The sky is blue today."]


@pytest.fixture(scope="module")
def minilm():
    return bert_vocab_dir()  # the package's model folder (sentence-transformers config included)


@pytest.fixture(scope="module")
def embed_server(minilm):
    server = Server("feature-extraction", minilm)
    yield server
    assert server.stop() == 0


def test_embeddings_equal_sentence_transformers(embed_server, minilm):
    import openai
    from sentence_transformers import SentenceTransformer

    with openai.OpenAI(base_url=embed_server.url + "/v1", api_key="unused", max_retries=0) as client:
        reply = client.embeddings.create(model="minilm", input=SENTENCES)
        single = client.embeddings.create(model="minilm", input=SENTENCES[0])
    expected = SentenceTransformer(str(minilm), device="cpu").encode(SENTENCES)  # pools + normalises per config
    assert [d.index for d in reply.data] == [0, 1, 2] and reply.object == "list"
    assert_same([d.embedding for d in reply.data], expected, atol=1e-5)
    assert_same(single.data[0].embedding, expected[0], atol=1e-5)
    assert np.allclose(np.linalg.norm(expected, axis=1), 1)  # the checkpoint's config asks for Normalize
    from transformers import AutoTokenizer

    tokens = sum(map(len, AutoTokenizer.from_pretrained(str(minilm))(SENTENCES).input_ids))
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == tokens
    raw = embed_server.post("/v1/embeddings", json={"input": SENTENCES[:1], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert_same(decoded, expected[0], atol=1e-5)


def test_bad_embedding_requests_are_422(embed_server):
    for body, field in [({"input": []}, "input"), ({"input": [[1, 2]]}, "input"), ({}, "input"),
                        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
                        ({"input": "x", "dimensions": 8}, "dimensions")]:
        response = embed_server.post("/v1/embeddings", json=body)
        assert response.status_code == 422 and response.json()["field"] == field, (body, response.text)
    assert embed_server.post("/v1/chat/completions", json={"messages": CHAT}).status_code == 404
