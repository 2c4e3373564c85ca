"""Logits processors and sampling warpers, in transformers 4.57.6's order (`_get_logits_processor`).

Each processor is a callable `(ids (N, L), scores (N, V)) -> scores (N, V)`: `ids` are all tokens so far
(prompt included, padding included), L their length. Everything is tensor ops on the device — the
length-dependent rules branch on the Python int L, never on tensor values — so no step syncs the host.
"""

from __future__ import annotations

from typing import Callable

import torch

from .config import GenerationConfig

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NEG_INF = float("-inf")


def build_processors(config: GenerationConfig, prompt_length: int, max_length: int, min_length: int,
                     vocab_size: int | None, device: torch.device, extra: list[Processor] | None = None
                     ) -> list[Processor]:
    """The processors this config turns on, in the order transformers applies them; a model's own rules
    (`extra`, e.g. Whisper's timestamp rules) run after the token suppression and before the warpers."""
    eos = config.eos_ids
    out: list[Processor] = []
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        out.append(_repetition_penalty(float(config.repetition_penalty)))
    if config.no_repeat_ngram_size and config.no_repeat_ngram_size > 0:
        out.append(_no_repeat_ngram(config.no_repeat_ngram_size))
    if config.bad_words_ids is not None:
        out.append(_bad_words(config.bad_words_ids, eos, vocab_size, device))
    if eos is not None:
        eos_ids = torch.tensor(eos, device=device)
        # min_length and min_new_tokens (already folded into min_length by resolve_lengths) suppress EOS.
        if min_length > 0:
            out.append(_suppress_while(eos_ids, lambda L: L < min_length))
    if config.forced_bos_token_id is not None:
        out.append(_force_at(torch.tensor([config.forced_bos_token_id], device=device), lambda L: L == 1))
    if config.forced_eos_token_id is not None:
        forced = config.forced_eos_token_id
        forced = torch.tensor([forced] if isinstance(forced, int) else list(forced), device=device)
        out.append(_force_at(forced, lambda L: L == max_length - 1))
    if config.suppress_tokens is not None:
        out.append(_suppress_while(torch.tensor(config.suppress_tokens, device=device), lambda L: True))
    if config.begin_suppress_tokens is not None:
        begin = prompt_length + (1 if prompt_length == 1 and config.forced_bos_token_id is not None else 0)
        out.append(_suppress_while(torch.tensor(config.begin_suppress_tokens, device=device), lambda L: L == begin))
    out.extend(extra or [])
    if config.do_sample:
        # Beam sampling keeps enough candidates to always have one that is not EOS.
        keep = (len(eos) + 1 if eos else 2) if config.num_beams > 1 else 1
        if config.temperature is not None and config.temperature != 1.0:
            temperature = float(config.temperature)
            out.append(lambda ids, scores: scores / temperature)
        if config.top_k is not None and config.top_k != 0:
            out.append(_top_k(max(config.top_k, keep)))
        if config.top_p is not None and config.top_p < 1.0:
            out.append(_top_p(float(config.top_p), keep))
        if config.min_p is not None:
            out.append(_min_p(float(config.min_p), keep))
    return out


def apply(processors: list[Processor], ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    for process in processors:
        scores = process(ids, scores)
    return scores


# ----- processors -----
def _repetition_penalty(penalty: float) -> Processor:
    """Every token already present: divide a positive logit by `penalty`, multiply a negative one."""
    def process(ids, scores):
        seen = scores.gather(1, ids)
        return scores.scatter(1, ids, torch.where(seen < 0, seen * penalty, seen / penalty))
    return process


def _no_repeat_ngram(n: int) -> Processor:
    """Ban every token that would complete an n-gram already present in the row."""
    def process(ids, scores):
        L = ids.shape[1]
        if L < n:
            return scores
        windows = ids.unfold(1, n, 1)  # (N, L-n+1, n): every n-gram so far
        match = (windows[:, :, :-1] == ids[:, L - n + 1:][:, None, :]).all(-1)  # prefix equals the last n-1
        hits = torch.zeros(scores.shape, dtype=torch.int32, device=scores.device)
        hits.scatter_add_(1, windows[:, :, -1], match.int())
        return scores.masked_fill(hits > 0, NEG_INF)
    return process


def _bad_words(bad_words_ids: list[list[int]], eos: list[int] | None, vocab_size: int | None, device) -> Processor:
    """Ban a token when it would complete one of the sequences (single tokens: always); [eos] is exempt."""
    sequences = [seq for seq in bad_words_ids if not (eos and len(seq) == 1 and seq[0] in eos)]
    too_large = sorted({t for seq in sequences for t in seq if vocab_size is not None and t >= vocab_size})
    if too_large:
        raise ValueError(f"`bad_words_ids` holds token ids {too_large} outside the vocabulary (size {vocab_size}).")
    singles = torch.tensor([seq[0] for seq in sequences if len(seq) == 1], dtype=torch.long, device=device)
    longer = [(torch.tensor(seq[:-1], device=device), seq[-1]) for seq in sequences if len(seq) > 1]

    def process(ids, scores):
        banned = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        banned[:, singles] = True
        for prefix, last in longer:
            if prefix.shape[0] + 1 <= ids.shape[1]:
                banned[:, last] |= (ids[:, -prefix.shape[0]:] == prefix).all(-1)
        return scores.masked_fill(banned, NEG_INF)
    return process


def _suppress_while(token_ids: torch.Tensor, when: Callable[[int], bool]) -> Processor:
    """Set the tokens' scores to -inf at the lengths `when` accepts."""
    def process(ids, scores):
        if not when(ids.shape[1]):
            return scores
        scores = scores.clone()
        scores[:, token_ids] = NEG_INF
        return scores
    return process


def _force_at(token_ids: torch.Tensor, when: Callable[[int], bool]) -> Processor:
    """At the lengths `when` accepts, only the given tokens are possible (score 0, the rest -inf)."""
    def process(ids, scores):
        if not when(ids.shape[1]):
            return scores
        forced = torch.full_like(scores, NEG_INF)
        forced[:, token_ids] = 0
        return forced
    return process


# ----- sampling warpers -----
def _top_k(k: int) -> Processor:
    def process(ids, scores):
        kth = torch.topk(scores, min(k, scores.shape[-1]))[0][..., -1:]
        return scores.masked_fill(scores < kth, NEG_INF)
    return process


def _top_p(p: float, keep: int) -> Processor:
    """Keep the smallest set of most likely tokens whose probabilities sum past p (at least `keep`)."""
    def process(ids, scores):
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - p)
        remove[..., -keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)
    return process


def _min_p(p: float, keep: int) -> Processor:
    """Drop tokens less likely than p times the most likely one (keeping at least `keep`)."""
    def process(ids, scores):
        probs = scores.softmax(-1)
        remove = probs < p * probs.max(-1, keepdim=True)[0]
        order = torch.argsort(scores, descending=True, dim=-1)
        sorted_remove = remove.gather(-1, order)
        sorted_remove[..., :keep] = False
        return scores.masked_fill(sorted_remove.scatter(1, order, sorted_remove), NEG_INF)
    return process


def timestamp_rules(no_timestamps_id: int, eos_id: int, begin: int, max_initial_index: int | None) -> Processor:
    """Whisper's timestamp grammar (transformers' WhisperTimeStampLogitsProcessor): timestamps come in pairs
    and never go back, the first token is a timestamp no later than `max_initial_index`, and a timestamp is
    forced when all timestamps together are likelier than any text token. `begin` is the prompt length."""
    first = no_timestamps_id + 1

    def process(ids, scores):
        scores = scores.clone()
        scores[:, no_timestamps_id] = NEG_INF
        for row, seq in enumerate(ids[:, begin:].tolist()):
            last = len(seq) >= 1 and seq[-1] >= first
            penultimate = len(seq) < 2 or seq[-2] >= first
            if last:  # after a pair only text (or a new pair's start); after a lone one, its partner or EOS
                if penultimate:
                    scores[row, first:] = NEG_INF
                else:
                    scores[row, :eos_id] = NEG_INF
            stamps = [t for t in seq if t >= first]
            if stamps:
                floor = stamps[-1] if last and not penultimate else stamps[-1] + 1
                scores[row, first:floor] = NEG_INF
        if ids.shape[1] == begin:
            scores[:, :first] = NEG_INF
            if max_initial_index is not None:
                scores[:, first + max_initial_index + 1:] = NEG_INF
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        timestamp_wins = logprobs[:, first:].logsumexp(-1) > logprobs[:, :first].max(-1).values
        scores[timestamp_wins, :first] = NEG_INF
        return scores

    return process
