"""Inputs nobody planned for, generated with hypothesis, through every implemented pipeline.

Each call either returns a well-formed result (JSON-serialisable; character offsets inside the input) or raises
a ValueError/TypeError raised by inferline itself (not from deep inside torch, tokenizers or numpy); nothing else
escapes. After every example the pipeline must still give transformers' answer for a fixed input. Examples are
bounded and derandomised, so CI runs the same ones every time; conftest prints how many ran.
"""

from __future__ import annotations

import collections
import json
import os
import traceback
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferline
from parity.compare import assert_same

SOURCE = str(Path(inferline.__file__).parent)
EXAMPLES = 150  # per pipeline; generation pipelines take fewer (see TASKS)
SCALE = float(os.environ.get("INFERLINE_FUZZ_SCALE", "1"))  # > 1 to explore more locally; CI runs the default

# ----- inputs -----
ODD = ["", " ", "\t\n \u3000\u200b", "\x00", "a\x00b", "\x07\x1b[31m", "e\u0301\u0301\u0301", "\u0301",
       "👩‍👩‍👧‍👦🏳️‍🌈", "\ud800", "x\udfffy", "שלום עולם", "\u202eevil\u202c", "مرحبا بالعالم", "[MASK]", "[CLS] [SEP]",
       "<s></s><pad>", "<|endoftext|>", "{}", "{0}", "%s", "\\", "\r\n\r\n", "🙂" * 300, "a" * 100_000,
       "word " * 20_000, "Paris is the [MASK] of France.", "My name is Wolfgang and I live in Berlin."]
TEXT = st.one_of(
    st.sampled_from(ODD),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40),
    st.lists(st.sampled_from(ODD[:24]), min_size=2, max_size=4).map("".join),
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                   st.binary(max_size=8), st.just(b"bytes"), st.just(object()))
JUNK = st.recursive(st.one_of(TEXT, SCALAR), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.sampled_from(["text", "text_pair", "question", "context", "role", "content"]),
                              st.text(max_size=5), st.integers()), inner, max_size=3)), max_leaves=6)
SMALL_INT = st.one_of(st.integers(-3, 5), st.sampled_from([10**9, -10**9]))
PARAM = st.one_of(SCALAR, TEXT, SMALL_INT, st.lists(st.one_of(TEXT, SMALL_INT), max_size=3),
                  st.dictionaries(st.text(max_size=8), SMALL_INT, max_size=2))


def chat(role=st.sampled_from(["user", "assistant", "system", "bot", ""])):
    # (extra keys hold JSON values: a chat's messages come back in the result as the caller gave them)
    message = st.fixed_dictionaries({"role": role, "content": TEXT},
                                    optional={"extra": st.one_of(st.none(), st.integers(), TEXT), "name": TEXT})
    return st.lists(st.one_of(message, st.dictionaries(st.sampled_from(["role", "content"]), JUNK, max_size=2)),
                    max_size=3)


def qa_dict():
    return st.one_of(
        st.fixed_dictionaries({"question": TEXT, "context": TEXT}),
        st.fixed_dictionaries({}, optional={"question": st.one_of(TEXT, JUNK), "context": st.one_of(TEXT, JUNK),
                                            "extra": JUNK}))


INPUTS = {
    "text-classification": st.one_of(TEXT, JUNK, st.fixed_dictionaries(
        {}, optional={"text": st.one_of(TEXT, JUNK), "text_pair": st.one_of(TEXT, JUNK), "label": JUNK})),
    "token-classification": st.one_of(TEXT, JUNK, st.lists(TEXT, max_size=4)),
    "question-answering": st.one_of(qa_dict(), st.lists(qa_dict(), max_size=3), JUNK),
    "fill-mask": st.one_of(TEXT.map(lambda t: t + " [MASK]"), TEXT, JUNK),
    "feature-extraction": st.one_of(TEXT, JUNK),
    "zero-shot-classification": st.one_of(TEXT, JUNK),
    "text-generation": st.one_of(TEXT.map(lambda t: t[:300]), chat(), st.lists(chat(), max_size=2), JUNK),
    "text2text-generation": st.one_of(TEXT.map(lambda t: t[:2000]), JUNK),
    "summarization": st.one_of(TEXT.map(lambda t: t[:2000]), JUNK),
    "translation_en_to_de": st.one_of(TEXT.map(lambda t: t[:2000]), JUNK),
    "conversational": st.one_of(TEXT.map(lambda t: inferline.Conversation(t[:300])), chat(),
                                chat(st.just("user")).map(inferline.Conversation), JUNK),
}

GENERATION = ["max_new_tokens", "min_new_tokens", "max_length", "min_length", "do_sample", "num_beams", "top_k",
              "top_p", "min_p", "temperature", "repetition_penalty", "no_repeat_ngram_size", "num_return_sequences",
              "eos_token_id", "pad_token_id", "stop_strings", "bad_words_ids", "length_penalty", "early_stopping",
              "generation_config", "streamer", "not_a_parameter"]
PARAMETERS = {
    "text-classification": ["top_k", "function_to_apply", "return_all_scores", "truncation", "max_length", "padding",
                            "not_a_parameter", "batch_size"],
    "token-classification": ["aggregation_strategy", "ignore_labels", "stride", "is_split_into_words", "delimiter",
                             "offset_mapping", "grouped_entities", "ignore_subwords", "batch_size"],
    "question-answering": ["top_k", "topk", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len",
                           "handle_impossible_answer", "align_to_words", "padding", "batch_size"],
    "fill-mask": ["top_k", "targets", "tokenizer_kwargs", "batch_size"],
    "feature-extraction": ["truncation", "tokenize_kwargs", "return_tensors", "pooling", "normalize", "batch_size"],
    "zero-shot-classification": ["candidate_labels", "hypothesis_template", "multi_label", "multi_class",
                                 "batch_size"],
    "text-generation": ["return_full_text", "return_tensors", "return_text", "return_type", "prefix",
                        "handle_long_generation", "stop_sequence", "truncation", "continue_final_message",
                        "add_generation_prompt", "skip_special_tokens", "clean_up_tokenization_spaces",
                        "tokenizer_encode_kwargs", "add_special_tokens", "padding", "batch_size", *GENERATION],
    "text2text-generation": ["return_tensors", "return_text", "return_type", "clean_up_tokenization_spaces",
                             "truncation", "stop_sequence", "batch_size", *GENERATION],
    "conversational": ["min_length_for_response", "minimum_tokens", "clean_up_tokenization_spaces", "batch_size",
                       *GENERATION],
}
PARAMETERS["summarization"] = PARAMETERS["translation_en_to_de"] = PARAMETERS["text2text-generation"] + \
    ["src_lang", "tgt_lang"]
# Values that are valid but would make one example slow (a million new tokens, a thousand beams) are left out.
BOUNDED = {"max_new_tokens", "min_new_tokens", "max_length", "min_length", "num_beams", "num_return_sequences",
           "top_k", "batch_size", "no_repeat_ngram_size", "min_length_for_response", "minimum_tokens"}

# task → (checkpoint arch, head, the fixed input, call kwargs used for every call, examples)
GREEDY = {"do_sample": False, "max_new_tokens": 2}
TASKS = {
    "text-classification": ("bert", "sequence-classification", "I love it", {}, EXAMPLES),
    "token-classification": ("bert", "token-classification", "My name is Wolfgang and I live in Berlin", {},
                             EXAMPLES),
    "question-answering": ("bert", "question-answering",
                           {"question": "Where do I live?", "context": "My name is Wolfgang and I live in Berlin"}, {},
                           EXAMPLES),
    "fill-mask": ("bert", "masked-lm", "Paris is the [MASK] of France.", {}, EXAMPLES),
    "feature-extraction": ("bert", "base", "Hello world", {}, EXAMPLES),
    "zero-shot-classification": ("bert", "sequence-classification", "The match ended in a draw.",
                                 {"candidate_labels": ["sports", "politics"]}, EXAMPLES),
    "text-generation": ("gpt2", "causal-lm", "Once upon a time", GREEDY, 80),
    "text2text-generation": ("t5", "seq2seq-lm", "translate English to German: hello", GREEDY, 60),
    "summarization": ("t5", "seq2seq-lm", "A long story about a cat and a dog.", GREEDY, 40),
    "translation_en_to_de": ("t5", "seq2seq-lm", "The house is wonderful.", GREEDY, 40),
    "conversational": ("gpt2", "causal-lm", None, {"max_new_tokens": 2}, 60),
}


# Valid values, drawn half the time, so the examples reach past the parameter checks into the pipelines.
VALID = {
    "aggregation_strategy": st.sampled_from(["none", "simple", "first", "average", "max", "SIMPLE"]),
    "function_to_apply": st.sampled_from(["default", "sigmoid", "softmax", "none"]),
    "pooling": st.sampled_from(["mean", "cls", "max", "none", "auto"]),
    "truncation": st.sampled_from([True, False, "longest_first", "only_first", "only_second", "do_not_truncate"]),
    "return_type": st.sampled_from([0, 1, 2]),
    "is_split_into_words": st.booleans(), "handle_impossible_answer": st.booleans(), "align_to_words": st.booleans(),
    "multi_label": st.booleans(), "return_tensors": st.booleans(), "return_full_text": st.booleans(),
    "normalize": st.booleans(), "do_sample": st.booleans(), "skip_special_tokens": st.booleans(),
    "candidate_labels": st.one_of(st.lists(TEXT, max_size=3), TEXT),
    "hypothesis_template": st.one_of(TEXT.map(lambda t: t + " {}"), TEXT),
    "targets": st.one_of(TEXT, st.lists(TEXT, max_size=3)), "ignore_labels": st.lists(TEXT, max_size=2),
    "stop_sequence": TEXT, "prefix": TEXT, "delimiter": TEXT, "stop_strings": st.one_of(TEXT, st.lists(TEXT, max_size=2)),
    "tokenize_kwargs": st.dictionaries(st.sampled_from(["truncation", "max_length", "add_special_tokens"]), PARAM,
                                       max_size=2),
    "tokenizer_kwargs": st.dictionaries(st.sampled_from(["truncation", "max_length", "add_special_tokens"]), PARAM,
                                        max_size=2),
    "max_length": st.integers(-2, 300), "max_seq_len": st.integers(-2, 400), "doc_stride": st.integers(-2, 200),
    "stride": st.integers(-2, 200), "max_answer_len": st.integers(-2, 40), "temperature": st.floats(-1, 3),
    "top_p": st.floats(-1, 2), "min_p": st.floats(-1, 2), "repetition_penalty": st.floats(-1, 3),
    "eos_token_id": st.integers(-5, 700), "pad_token_id": st.integers(-5, 700),
    "bad_words_ids": st.lists(st.lists(st.integers(-5, 700), max_size=2), max_size=2),
    "src_lang": TEXT, "tgt_lang": TEXT,
}


def call_strategy(task):
    names = PARAMETERS[task]

    def value_for(name):
        if name in BOUNDED:
            junk = st.one_of(st.integers(-2, 4), SCALAR.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)),
                             TEXT, st.lists(SMALL_INT, max_size=2))
        else:
            junk = PARAM
        return st.one_of(VALID[name], junk) if name in VALID else junk

    kwargs = st.lists(st.sampled_from(names), max_size=3, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({n: value_for(n) for n in chosen}))
    return st.tuples(INPUTS[task], kwargs)


# ----- checks -----
def plain(value):
    """A result as JSON would carry it (tensors as lists, a Conversation as its messages)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, inferline.Conversation):
        return value.messages
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def check_offsets(task, inputs, kwargs, result):
    """Character offsets of token-classification and question-answering results lie inside their input."""
    if task == "question-answering":
        answers = result if isinstance(result, list) else [result]
        for answer in (a for group in answers for a in (group if isinstance(group, list) else [group])):
            assert 0 <= answer["start"] <= answer["end"], answer
            if isinstance(inputs, dict):
                context = inputs["context"]
                assert answer["end"] <= len(context) and context[answer["start"]:answer["end"]] == answer["answer"]
    elif task == "token-classification" and isinstance(inputs, str):
        for entity in result:
            assert 0 <= entity["start"] <= entity["end"] <= len(inputs), entity


def raised_by_inferline(error: BaseException) -> bool:
    """Whether the error comes from a `raise` in inferline's own code (a clear error: not a deep trace, nor a
    Python or Rust error passing through an inferline line)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(SOURCE) and frames[-1].line.startswith("raise")


INPUT_WORDS = ("input", "text", "question", "context", "sequence", "prompt", "message", "conversation", "label",
               "mask", "word", "offset", "token", "chat", "role", "content", "pipeline", "list", "string", "dict")


def names_the_problem(message: str, kwargs: dict) -> bool:
    """An error names a parameter of the call, or says which part of the input is wrong."""
    lowered = message.lower()
    names = [*kwargs, *(k for v in kwargs.values() if isinstance(v, dict) for k in v if isinstance(k, str))]
    return any(name in message for name in names) or any(word in lowered for word in INPUT_WORDS)


@pytest.fixture(scope="module")
def fuzz(checkpoint, pipelines):
    """task → (our pipeline, the fixed input, its expected answer from transformers, call kwargs, examples)."""
    made = {}

    def make(task):
        if task not in made:
            arch, head, fixed, call, examples = TASKS[task]
            theirs, ours = pipelines("text-generation" if task == "conversational" else task, checkpoint(arch, head))
            if task == "conversational":
                ours = inferline.pipeline("conversational", model=str(checkpoint(arch, head)), device="cpu")
                # transformers 4.57.6 has no conversational pipeline: DialoGPT's format through text-generation
                fixed = "Hello there"
                expected = theirs(fixed + theirs.tokenizer.eos_token, return_full_text=False, do_sample=False,
                                  **call)[0]["generated_text"]
            else:
                expected = theirs(fixed, **call)
            made[task] = ours, fixed, expected, call, examples
        return made[task]

    return make


def answer(task, ours, fixed, call):
    if task == "conversational":
        return ours(inferline.Conversation(fixed), **call).messages[-1]["content"]
    return ours(fixed, **call)


@pytest.mark.parametrize("task", list(TASKS))
def test_unplanned_inputs(task, fuzz, record_property):
    ours, fixed, expected, call, examples = fuzz(task)
    assert_same(answer(task, ours, fixed, call), expected)
    tried, outcomes = [0], collections.Counter()

    @settings(max_examples=int(examples * SCALE), deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(case=call_strategy(task))
    def run(case):
        tried[0] += 1
        inputs, kwargs = case
        kwargs = {**call, **kwargs}
        try:
            result = ours(inputs, **kwargs)
            if hasattr(result, "__next__"):  # a generator in (JUNK holds none, but a dataset-like may) → a lazy out
                result = list(result)
        except (ValueError, TypeError) as error:
            outcomes[f"{type(error).__name__} from {traceback.extract_tb(error.__traceback__)[-1].name}"] += 1
            assert raised_by_inferline(error), "".join(traceback.format_exception(error))
            assert names_the_problem(str(error), kwargs), f"{type(error).__name__}: {error}"
        else:
            outcomes["a result"] += 1
            json.dumps(result, default=plain, allow_nan=False)
            check_offsets(task, inputs, kwargs, result)
        assert_same(answer(task, ours, fixed, call), expected)  # the pipeline still answers correctly

    try:
        run()
    finally:
        record_property("hypothesis_examples", tried[0])
        if os.environ.get("INFERLINE_FUZZ_SCALE"):  # exploring: say what the examples did
            print(task, dict(outcomes.most_common()))
