"""Beam search (and beam sampling), step for step transformers 4.57.6's vectorised `_beam_search`.

Per input, K = num_beams running hypotheses. Each step scores all K * V continuations, keeps the
best `keep` = max(2, 1 + #eos) * K candidates (so K of them can continue even if many end), moves
candidates that stop into the K-slot finished pool (score / generated_length ** length_penalty)
and continues with the K best that did not stop. Whether a batch item is done follows
`early_stopping`: True — K hypotheses finished; False — a heuristic says running beams can no longer
beat the worst finished one; "never" — the same with the best length a running beam could reach.
"""

from __future__ import annotations

import torch

from .config import GenerationConfig
from .logits import apply

NEG = -1.0e9  # transformers' "impossible" score (finite, so sums and sorts stay well defined)


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, K, ...) , index (B, J) → x[b, index[b, j], ...] of shape (B, J, ...)."""
    while index.dim() < x.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(x, index, dim=1)


def beam_search(decoder, prompt: torch.Tensor, config: GenerationConfig, max_length: int, processors, stopping,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """prompt (B*K, P), each input repeated K times → (B * num_return_sequences, P + longest kept)."""
    K, device = config.num_beams, prompt.device
    N, P = prompt.shape
    B = N // K
    eos, pad = config.eos_ids, config.pad_id
    keep = max(2, 1 + (len(eos) if eos else 0)) * K
    top_k_mask = torch.arange(keep, device=device) < K  # candidates ranked in the first K may be finished
    lp, early = config.length_penalty, config.early_stopping
    # transformers fills with `pad or eos[0]` (so a pad id of 0 falls through to eos), or -1 without eos.
    fill = (pad or eos[0]) if eos else -1

    running = torch.full((B, K, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :P] = prompt.view(B, K, P)
    finished_seqs = running.clone()
    running_scores = torch.zeros(B, K, device=device)
    running_scores[:, 1:] = NEG  # identical beams at the start: only the first may expand
    finished_scores = torch.full((B, K), NEG, device=device)
    is_finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)
    # Source row (flattened batch*beam index) of each generated token; -1 where none was generated.
    running_src = torch.full((B, K, max_length - P), -1, dtype=torch.int32, device=device)
    finished_src = running_src.clone()
    batch_offset = torch.arange(B, device=device)[:, None] * K

    length, start = P, 0
    while True:
        flat = running[:, :, :length].reshape(N, length)
        log_probs = decoder.step(flat[:, start:], length).log_softmax(-1)
        log_probs = apply(processors, flat, log_probs)  # (N, V)
        V = log_probs.shape[-1]
        totals = (log_probs.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)

        # The best `keep` continuations (or `keep` sampled without replacement).
        if config.do_sample:
            cand = torch.multinomial(totals.softmax(-1), keep, generator=generator)
            cand_scores = totals.gather(1, cand)
        else:
            cand_scores, cand = torch.topk(totals, keep)
        cand_beam = torch.div(cand, V, rounding_mode="floor")
        cand_seqs = _gather(running, cand_beam)  # (B, keep, max_length)
        cand_seqs[:, :, length] = cand % V
        cand_src = _gather(running_src, cand_beam)
        cand_src[:, :, length - P] = (cand_beam + batch_offset).int()
        hits = stopping(cand_seqs[:, :, :length + 1].reshape(B * keep, length + 1)).view(B, keep)
        if length + 1 >= max_length:
            hits = torch.ones_like(hits)

        # Continue with the K best candidates that did not stop.
        alive_scores = cand_scores + hits.float() * NEG
        best = torch.topk(alive_scores, K)[1]
        running, running_scores, running_src = _gather(cand_seqs, best), _gather(alive_scores, best), \
            _gather(cand_src, best)

        # Offer the stopped candidates (among the first K) to the finished pool.
        just_finished = hits & top_k_mask[None]
        scores = cand_scores / ((length + 1 - P) ** lp)
        pool_full = is_finished.all(-1, keepdim=True) & (early is True)
        scores = scores + pool_full.float() * NEG + (~improvable).float() * NEG + (~just_finished).float() * NEG
        merged_scores = torch.cat((finished_scores, scores), 1)
        best = torch.topk(merged_scores, K)[1]
        finished_seqs = _gather(torch.cat((finished_seqs, cand_seqs), 1), best)
        finished_scores = _gather(merged_scores, best)
        finished_src = _gather(torch.cat((finished_src, cand_src), 1), best)
        is_finished = _gather(torch.cat((is_finished, just_finished), 1), best)

        decoder.reorder(running_src[:, :, length - P].reshape(N).long())
        start, length = length, length + 1

        # Could a running beam still beat the worst finished one?
        reach = (max_length if early == "never" and lp > 0.0 else length) - P
        best_running = running_scores[:, :1] / (reach ** lp)
        worst_finished = torch.where(is_finished, finished_scores.min(1, keepdim=True)[0], NEG)
        improvable = improvable & (best_running > worst_finished).any(-1, keepdim=True)
        go_on = improvable.any() & ~(is_finished.all() & (early is True)) & ~hits.all()
        if length >= max_length or not bool(go_on):  # the one host sync per step
            break

    R = config.num_return_sequences
    seqs = finished_seqs[:, :R].reshape(B * R, max_length)
    if decoder.probe is not None:  # which row computed each kept token, to follow its attention weights
        decoder.probe.sources = finished_src[:, :R].reshape(B * R, -1)
    generated = (finished_src[:, :R].reshape(B * R, -1) >= 0).sum(1).max()
    return seqs[:, :P + int(generated)]
