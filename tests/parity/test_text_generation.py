"""text-generation (and the old conversational API) against transformers 4.57.6, over the decoder
architectures: greedy completions of strings, lists and chats at batch_size 1 (== transformers) and 8
(== our batch 1), the output options, beams, stop sequences, chat templates, long prompts, streaming,
length and sampling defaults, and errors."""

from __future__ import annotations

import json
import shutil
import threading

import jinja2
import pytest
import torch

from fixtures.checkpoints import CORPUS
from parity.archs import DECODER_ARCHS as ARCHS
from parity.compare import assert_plain_json, assert_same

GREEDY = dict(do_sample=False, max_new_tokens=8)
PROMPTS = [line[:n] for line, n in zip(CORPUS, (12, 30, 45, 20, 60, 8, 38, 25))]  # 8 different lengths
OPTIONS = {
    "new-text": dict(return_full_text=False),
    "tensors": dict(return_tensors=True),
    "prefix": dict(prefix="Once upon a time, "),
    "beams": dict(num_beams=3, num_return_sequences=2),
    "keep-special": dict(skip_special_tokens=False, clean_up_tokenization_spaces=False),
    "penalties": dict(repetition_penalty=1.5, no_repeat_ngram_size=2, min_new_tokens=2),
}
TEMPLATE = """{{ bos_token }}
{% for message in messages %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('Unknown role: ' + message['role']) }}
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Where is Paris?"}]
PREFILL = CHAT + [{"role": "assistant", "content": "Paris is in"}]


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines("text-generation", checkpoint(request.param, "causal-lm"))


def gpt2(checkpoint, pipelines):
    return pipelines("text-generation", checkpoint("gpt2", "causal-lm"))


@pytest.fixture(scope="session")
def variant(checkpoint, tmp_path_factory):
    """variant(arch, name, edit) → a copy of the arch's checkpoint changed by edit(folder), made once."""
    made = {}

    def make(arch, name, edit):
        if (arch, name) not in made:
            folder = tmp_path_factory.mktemp(f"{arch}-{name}") / "model"
            shutil.copytree(checkpoint(arch, "causal-lm"), folder)
            edit(folder)
            made[arch, name] = folder
        return made[arch, name]

    return make


def with_template(folder):
    """llama: the template as chat_template.jinja; the others: inside tokenizer_config.json."""
    if "llama" in folder.parent.name:
        (folder / "chat_template.jinja").write_text(TEMPLATE)
        return
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TEMPLATE}))


@pytest.fixture(params=["llama", "qwen2"])
def chat_pair(request, variant, pipelines):
    return pipelines("text-generation", variant(request.param, "chat", with_template))


# ----- strings and lists -----
def test_string_list_and_batches(pair):
    theirs, ours = pair
    assert_same(ours(PROMPTS[0], **GREEDY), theirs(PROMPTS[0], **GREEDY))
    expected = theirs(PROMPTS, **GREEDY)
    result = ours(PROMPTS, **GREEDY)
    assert_same(result, expected)
    assert_plain_json(result)
    assert_same(ours(PROMPTS, batch_size=8, **GREEDY), expected)  # left padding changes nothing
    lazy = ours((p for p in PROMPTS[:3]), batch_size=2, **GREEDY)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), expected[:3])


@pytest.mark.parametrize("case", OPTIONS)
def test_options(pair, case):
    theirs, ours = pair
    kwargs = {**GREEDY, **OPTIONS[case]}
    expected = theirs(PROMPTS[:3], **kwargs)
    assert_same(ours(PROMPTS[:3], **kwargs), expected)
    assert_same(ours(PROMPTS[:3], batch_size=3, **kwargs), expected)


def test_construction_parameters_and_call_override(checkpoint, pipelines):
    theirs, ours = pipelines("text-generation", checkpoint("llama", "causal-lm"), max_new_tokens=4, do_sample=False,
                             return_full_text=False)
    assert_same(ours(PROMPTS[1]), theirs(PROMPTS[1]))
    assert_same(ours(PROMPTS[1], max_new_tokens=6), theirs(PROMPTS[1], max_new_tokens=6))


def test_finished_rows_batched_equal_unbatched(pair):
    """Rows that hit an EOS early are padded in a batch; each result is cut back to its unbatched length."""
    theirs, ours = pair
    free = ours(PROMPTS, return_tensors=True, **GREEDY)
    prompt_lengths = [len(ours.tokenizer.encode(p)[0].ids) for p in PROMPTS]
    eos = free[0][0]["generated_token_ids"][prompt_lengths[0] + 2]  # the first prompt stops after 3 tokens
    for kwargs in (dict(return_tensors=True), dict(), dict(num_beams=2, num_return_sequences=2)):
        kwargs = {**GREEDY, "eos_token_id": eos, **kwargs}
        single = ours(PROMPTS, **kwargs)
        assert_same(ours(PROMPTS, batch_size=8, **kwargs), single)
        assert_same(single[:2], theirs(PROMPTS[:2], **kwargs))


def test_stop_sequence(pair):
    theirs, ours = pair
    text = ours(PROMPTS[2], return_full_text=False, **GREEDY)[0]["generated_text"]
    stop = ours.tokenizer.decode(ours.tokenizer.encode(text, add_special_tokens=False)[0].ids[3:4])
    result = ours(PROMPTS[2], stop_sequence=stop, **GREEDY)
    assert_same(result, theirs(PROMPTS[2], stop_sequence=stop, **GREEDY))


def stop_in(text: str) -> str:
    """A visible ASCII character from the middle third of text (byte-fallback pieces decode to U+FFFD, which
    transformers' stop strings, matched on token strings, never see)."""
    middle = range(len(text) // 3, 2 * len(text) // 3 + 1)
    return next(text[i] for i in middle if text[i].isascii() and text[i].isprintable() and not text[i].isspace())


def test_stop_strings(pair):
    theirs, ours = pair
    greedy = {**GREEDY, "max_new_tokens": 12}
    free = [r[0]["generated_text"] for r in theirs(PROMPTS[:3], return_full_text=False, **greedy)]
    stops = [stop_in(text) for text in free]
    # transformers' pipeline fails on stop_strings unless also given tokenizer= (its generate needs one); ours
    # hands generate its own tokenizer.
    given = {"tokenizer": theirs.tokenizer}
    kwargs = {**greedy, "stop_strings": stops[0]}
    result = ours(PROMPTS[0], **kwargs)
    assert_same(result, theirs(PROMPTS[0], **kwargs, **given))
    assert len(ours(PROMPTS[0], return_full_text=False, **kwargs)[0]["generated_text"]) < len(free[0])  # it stopped
    kwargs["stop_strings"] = stops
    expected = theirs(PROMPTS[:3], **kwargs, **given)
    assert_same(ours(PROMPTS[:3], **kwargs), expected)
    assert_same(ours(PROMPTS[:3], batch_size=3, **kwargs), expected)


@pytest.mark.parametrize("kwargs", [dict(top_p=0.8), dict(min_p=0.15), dict(top_p=0.9, top_k=0, temperature=1.3)],
                         ids=str)
def test_sampling_parameters(pair, kwargs):
    """top_p / min_p at pipeline level: with the global seed set alike, the same draws as transformers (one input:
    transformers' DataLoader draws a seed from the RNG for a list)."""
    theirs, ours = pair
    call = dict(do_sample=True, max_new_tokens=8, **kwargs)
    torch.manual_seed(0)
    expected = theirs(PROMPTS[1], **call)
    torch.manual_seed(0)
    assert_same(ours(PROMPTS[1], **call), expected)
    torch.manual_seed(0)
    assert ours(PROMPTS[1], do_sample=True, max_new_tokens=8, top_k=0) != expected  # the filter changed the draws


def test_empty_prompt_starts_from_bos(checkpoint, pipelines):
    theirs, ours = gpt2(checkpoint, pipelines)
    assert_same(ours("", **GREEDY), theirs("", **GREEDY))
    assert_same(ours("", return_tensors=True, **GREEDY), theirs("", return_tensors=True, **GREEDY))


# ----- chats -----
def test_chat_template_renders_like_transformers(chat_pair):
    theirs, ours = chat_pair
    for messages, flags in ((CHAT, dict(add_generation_prompt=True)), (CHAT, {}),
                            (PREFILL, dict(continue_final_message=True))):
        expected = theirs.tokenizer.apply_chat_template(messages, tokenize=False, **flags)
        assert ours.tokenizer.apply_chat_template(messages, **flags) == expected
        assert ours.tokenizer.apply_chat_template(messages, tokenize=True, **flags) == \
            theirs.tokenizer.apply_chat_template(messages, tokenize=True, **flags)


def test_chat_generation(chat_pair):
    theirs, ours = chat_pair
    for kwargs in (GREEDY, {**GREEDY, "return_full_text": False}, {**GREEDY, "return_tensors": True}):
        result = ours(CHAT, **kwargs)
        assert_same(result, theirs(CHAT, **kwargs))
        assert_plain_json(result)
    chats = [CHAT, CHAT[1:], PREFILL]
    expected = theirs(chats, **GREEDY)
    assert_same(ours(chats, **GREEDY), expected)
    assert_same(ours(chats, batch_size=3, **GREEDY), expected)
    assert expected[0][0]["generated_text"][:2] == CHAT and expected[0][0]["generated_text"][2]["role"] == "assistant"


def test_continue_final_message(chat_pair):
    theirs, ours = chat_pair
    result = ours(PREFILL, **GREEDY)  # a final assistant message is continued by default
    assert_same(result, theirs(PREFILL, **GREEDY))
    assert len(result[0]["generated_text"]) == 3 and result[0]["generated_text"][2]["content"].startswith("Paris is")
    for flag in (True, False):
        assert_same(ours(PREFILL, continue_final_message=flag, **GREEDY),
                    theirs(PREFILL, continue_final_message=flag, **GREEDY))


def test_chat_template_variables_and_errors(chat_pair):
    theirs, ours = chat_pair
    with pytest.raises(jinja2.TemplateError, match="Unknown role: robot"):  # the template's raise_exception
        ours([{"role": "robot", "content": "beep"}], **GREEDY)
    with pytest.raises(ValueError, match="cannot both be True"):
        ours(CHAT, add_generation_prompt=True, continue_final_message=True, **GREEDY)
    with pytest.raises(ValueError, match="'role' and 'content'"):
        ours([{"role": "user"}], **GREEDY)
    # tokenizer_encode_kwargs reach the template: another template, and variables of its own.
    custom = dict(chat_template="{{ greeting }}{% for m in messages %}{{ m.content }}|{% endfor %}", greeting="Hey ")
    assert_same(ours(CHAT, tokenizer_encode_kwargs=custom, **GREEDY), theirs(CHAT, tokenizer_encode_kwargs=custom,
                                                                             **GREEDY))
    # add_generation_prompt=False: the chat as is (transformers' pipeline has no such parameter).
    plain = ours.tokenizer.apply_chat_template(CHAT)
    assert ours(CHAT, add_generation_prompt=False, return_full_text=False, **GREEDY) == \
        [{"generated_text": theirs(plain, add_special_tokens=False, return_full_text=False, **GREEDY)[0]
          ["generated_text"]}]


def test_tokenizer_template_features(checkpoint):
    """Loop controls, {% generation %}, tojson without HTML escaping, strftime_now, trimmed final messages."""
    import transformers

    from inferline.processing.tokenizer import Tokenizer

    path = checkpoint("qwen2", "causal-lm")
    template = ("{% for m in messages %}{% if loop.index > 3 %}{% break %}{% endif %}"
                "{% generation %}<|{{ m.role }}|>{{ m.content | trim }}{% endgeneration %}{{ eos_token }}\n"
                "{% endfor %}{{ {'n': messages | length, 's': 'é<>'} | tojson }}{{ strftime_now('%Y') | length }}")
    theirs, ours = transformers.AutoTokenizer.from_pretrained(path), Tokenizer.from_pretrained(path)
    messages = [{"role": "user", "content": f" turn {i} "} for i in range(5)]
    for flags in ({}, dict(add_generation_prompt=True), dict(continue_final_message=True)):
        assert ours.apply_chat_template(messages[:3], chat_template=template, **flags) == \
            theirs.apply_chat_template(messages[:3], chat_template=template, tokenize=False, **flags)
    assert ours.apply_chat_template(messages, chat_template=template) == \
        theirs.apply_chat_template(messages, chat_template=template, tokenize=False)


def test_template_files(tmp_path):
    from inferline.processing.chat_template import load_chat_template

    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "legacy"}))
    assert load_chat_template(tmp_path, {}) == "legacy"
    assert load_chat_template(tmp_path, {"chat_template": "config"}) == "config"
    (tmp_path / "additional_chat_templates").mkdir()
    (tmp_path / "additional_chat_templates" / "tool_use.jinja").write_text("tools")
    (tmp_path / "chat_template.jinja").write_text("file")
    assert load_chat_template(tmp_path, {"chat_template": "config"}) == [
        {"name": "default", "template": "file"}, {"name": "tool_use", "template": "tools"}]


def test_chat_without_template(checkpoint, pipelines):
    theirs, ours = gpt2(checkpoint, pipelines)
    with pytest.raises(ValueError, match="chat template"):
        theirs(CHAT, **GREEDY)
    with pytest.raises(ValueError, match="no chat template"):
        ours(CHAT, **GREEDY)


# ----- long prompts, streaming, lengths and defaults -----
def test_hole_keeps_the_end_of_a_long_prompt(checkpoint, pipelines):
    theirs, ours = gpt2(checkpoint, pipelines)  # model_max_length 128
    long_prompt = " ".join(CORPUS)
    kwargs = dict(handle_long_generation="hole", **GREEDY)
    result = ours(long_prompt, **kwargs)
    assert_same(result, theirs(long_prompt, **kwargs))
    assert_same(ours(long_prompt, return_tensors=True, **kwargs), theirs(long_prompt, return_tensors=True, **kwargs))
    assert len(ours(long_prompt, return_tensors=True, **kwargs)[0]["generated_token_ids"]) == 128


def test_streaming_from_another_thread(checkpoint, pipelines):
    from inferline.generation import TextIteratorStreamer

    _, ours = gpt2(checkpoint, pipelines)
    streamer = TextIteratorStreamer(ours.tokenizer, skip_prompt=True, timeout=60, skip_special_tokens=True)
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=ours(PROMPTS[4], streamer=streamer,
                                                                     return_full_text=False, **GREEDY)))
    worker.start()
    pieces = list(streamer)
    worker.join()
    assert len(pieces) == GREEDY["max_new_tokens"] + 1  # one per token, then the final flush
    assert "".join(pieces) == result["out"][0]["generated_text"]


def test_max_length_is_honoured(checkpoint, pipelines):
    """Documented: max_length bounds prompt + new tokens (transformers 4.57.6 lets its default
    max_new_tokens=256 override a call-time max_length)."""
    theirs, ours = gpt2(checkpoint, pipelines)
    length = len(ours.tokenizer.encode(PROMPTS[1])[0].ids)
    got = ours(PROMPTS[1], do_sample=False, max_length=length + 5, return_tensors=True)
    assert len(got[0]["generated_token_ids"]) == length + 5
    assert_same(got, theirs(PROMPTS[1], do_sample=False, max_new_tokens=5, return_tensors=True))


def test_return_tensors_false_returns_text(checkpoint, pipelines):
    """Documented: return_tensors=False keeps the decoded text (transformers returns token ids for it)."""
    theirs, ours = gpt2(checkpoint, pipelines)
    assert_same(ours(PROMPTS[0], return_tensors=False, **GREEDY), theirs(PROMPTS[0], **GREEDY))


def test_default_sampling_is_seeded(checkpoint, pipelines):
    """No sampling settings anywhere: do_sample=True, temperature=0.7 (as transformers), reproducible by seed."""
    theirs, ours = gpt2(checkpoint, pipelines)
    config = ours.generation_config
    assert (config.do_sample, config.temperature, config.max_new_tokens) == (True, 0.7, 256)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(ours(PROMPTS[:2], max_new_tokens=10))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    torch.manual_seed(0)
    alone = ours(PROMPTS[0], max_new_tokens=10)
    torch.manual_seed(0)  # (a single input: transformers' DataLoader draws a seed from the RNG for a list)
    assert_same(alone, theirs(PROMPTS[0], max_new_tokens=10))  # same defaults, same draws


def test_checkpoint_generation_config_wins_over_pipeline_defaults(variant, pipelines):
    """Documented: the pipeline defaults apply only where generation_config.json sets nothing (transformers
    4.57.6 keeps its own temperature=0.7 and max_new_tokens=256 over the checkpoint's)."""
    def edit(folder):
        config = json.loads((folder / "generation_config.json").read_text())
        (folder / "generation_config.json").write_text(json.dumps({**config, "temperature": 0.6, "max_new_tokens": 3}))

    _, ours = pipelines("text-generation", variant("gpt2", "generation-config", edit))
    config = ours.generation_config
    assert (config.do_sample, config.temperature, config.max_new_tokens) == (True, 0.6, 3)
    length = len(ours.tokenizer.encode(PROMPTS[0])[0].ids)
    assert len(ours(PROMPTS[0], return_tensors=True)[0]["generated_token_ids"]) == length + 3


# ----- errors -----
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
    (dict(num_beams=2, num_return_sequences=3, do_sample=False), ValueError, "num_return_sequences"),
    (dict(max_new_tokenz=3), TypeError, "max_new_tokenz"),
    (dict(handle_long_generation="middle"), ValueError, "handle_long_generation"),
    (dict(return_full_text=False, return_tensors=True), ValueError, "return_full_text"),
    (dict(return_type="everything"), ValueError, "return_type"),
], ids=str)
def test_parameter_errors(checkpoint, pipelines, kwargs, error, match):
    _, ours = gpt2(checkpoint, pipelines)
    with pytest.raises(error, match=match):
        ours(PROMPTS[0], **kwargs)


def test_input_errors(checkpoint, pipelines):
    _, ours = pipelines("text-generation", checkpoint("qwen2", "causal-lm"))
    with pytest.raises(ValueError, match="empty"):  # no tokens and no BOS to start from
        ours("", **GREEDY)
    with pytest.raises(TypeError, match="string or a chat"):
        ours(42, **GREEDY)
    with pytest.raises(ValueError, match="empty list"):
        ours([], **GREEDY)


# ----- the conversational API -----
def test_conversation_api(caplog):
    from inferline import Conversation

    conversation = Conversation("Going to the movies tonight - any suggestions?")
    assert conversation.messages == [{"role": "user", "content": "Going to the movies tonight - any suggestions?"}]
    assert conversation.past_user_inputs == [] and conversation.new_user_input == conversation[0]["content"]
    conversation.mark_processed()
    assert conversation.past_user_inputs == ["Going to the movies tonight - any suggestions?"]
    conversation.append_response("The Big Lebowski.")
    conversation.add_user_input("Is it good?")
    conversation.add_user_input("Ignored.")  # an unanswered input is kept (with a warning)
    assert "Ignored." in caplog.text and conversation.new_user_input == "Is it good?"
    conversation.add_user_input("Is it long?", overwrite=True)
    assert conversation.past_user_inputs == ["Going to the movies tonight - any suggestions?"]
    assert conversation.generated_responses == ["The Big Lebowski."]
    assert list(conversation.iter_texts()) == [(True, "Going to the movies tonight - any suggestions?"),
                                               (False, "The Big Lebowski."), (True, "Is it long?")]
    assert repr(conversation) == (f"Conversation id: {conversation.uuid}\nuser: Going to the movies tonight - any "
                                  f"suggestions?\nassistant: The Big Lebowski.\nuser: Is it long?\n")
    legacy = Conversation("Now?", past_user_inputs=["a", "b"], generated_responses=["c"])
    assert [m["content"] for m in legacy] == ["a", "c", "b", "Now?"] and len(legacy) == 4
    assert legacy == Conversation(legacy.messages) and legacy != Conversation("Now?")
    with pytest.raises(ValueError, match="role"):
        legacy.add_message({"role": "robot", "content": "x"})
    with pytest.raises(ValueError, match="past_user_inputs"):
        Conversation(generated_responses=["x"])


def _reply(theirs, messages, **template):
    """transformers 4.41's conversational reply: template with a generation prompt, greedy, new tokens decoded."""
    ids = theirs.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", **template)
    with torch.no_grad():
        out = theirs.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6)
    return theirs.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_conversational_round_trip(variant, pipelines):
    from inferline import Conversation
    from inferline.pipelines.conversational import ConversationalPipeline

    path = variant("qwen2", "chat", with_template)
    theirs, _ = pipelines("text-generation", path)
    import inferline

    chatbot = inferline.pipeline("conversational", model=str(path), device="cpu", max_new_tokens=6)
    assert isinstance(chatbot, ConversationalPipeline) and chatbot.generation_config.do_sample is False
    conversation = Conversation(CHAT)
    assert chatbot(conversation) is conversation  # updated in place and returned
    assert conversation.messages[-1] == {"role": "assistant", "content": _reply(theirs, CHAT)}
    conversation.add_user_input("And London?")
    chatbot(conversation)
    assert conversation.generated_responses[-1] == _reply(theirs, conversation.messages[:-1])
    # A list in gives a list out, even of one (transformers 4.41 unwrapped it): like every other pipeline.
    replies = chatbot([Conversation(CHAT[1:]), Conversation("Hi")], batch_size=2)
    assert [c.generated_responses[-1] for c in replies] == [_reply(theirs, CHAT[1:]),
                                                            _reply(theirs, [{"role": "user", "content": "Hi"}])]
    assert isinstance(chatbot([CHAT[1:]]), list) and isinstance(chatbot(CHAT[1:]), Conversation)


def test_conversational_generator(variant, pipelines):
    import inferline
    from inferline import Conversation

    theirs, _ = pipelines("text-generation", variant("qwen2", "chat", with_template))
    chatbot = inferline.pipeline("conversational", model=str(variant("qwen2", "chat", with_template)), device="cpu",
                                 max_new_tokens=6)
    chats = [CHAT[1:], [{"role": "user", "content": "Hi"}], CHAT]
    for batch_size in (1, 2):
        lazy = chatbot((Conversation(c) for c in chats), batch_size=batch_size)
        assert not isinstance(lazy, (list, Conversation))
        assert [c.generated_responses[-1] for c in lazy] == [_reply(theirs, c) for c in chats]


def test_conversational_without_template_uses_the_legacy_format(checkpoint, pipelines):
    import inferline
    from inferline.pipelines.conversational import LEGACY_CHAT_TEMPLATE

    path = checkpoint("gpt2", "causal-lm")
    theirs, _ = gpt2(checkpoint, pipelines)
    chatbot = inferline.pipeline("conversational", model=str(path), device="cpu", max_new_tokens=6)
    reply = chatbot([{"role": "user", "content": "Hello there"}]).messages[-1]["content"]
    assert reply == _reply(theirs, [{"role": "user", "content": "Hello there"}], chat_template=LEGACY_CHAT_TEMPLATE)
