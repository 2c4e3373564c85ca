"""`generate`: the one decoding loop for every decoder — greedy, sampling, beam search (beam.py).

Semantics are transformers 4.57.6's `generate` (lengths, special-token fallbacks, processor order,
padding of finished rows), so outputs match token for token. The mechanics are ours: a token buffer
and a KV cache preallocated for the whole generation, one model call per step on just the new
tokens, and a single host sync per step (the "is everything finished?" check).
"""

from __future__ import annotations

import torch

from .beam import beam_search
from .config import GenerationConfig
from .logits import apply, build_processors


class Decoder:
    """One decoding step of a decoder-only or encoder-decoder model over a preallocated cache."""

    def __init__(self, model, batch_size: int, max_length: int, attention_mask: torch.Tensor | None,
                 encoder_hidden: torch.Tensor | None = None, encoder_mask: torch.Tensor | None = None,
                 probe=None):
        self.model = model
        self.cache = model.new_cache(batch_size, max_length)
        self.probe = self.cache.probe = probe
        self.mask = attention_mask  # (N, max_length): prompt mask, then ones for generated tokens
        self.encoder_hidden, self.encoder_mask = encoder_hidden, encoder_mask

    def step(self, new_ids: torch.Tensor, length: int) -> torch.Tensor:
        """new_ids (N, T) are the tokens ending at `length`; returns next-token logits (N, V) in float32."""
        if self.encoder_hidden is not None:
            logits = self.model.decode(new_ids, self.encoder_hidden, self.encoder_mask, self.cache)
        else:
            logits = self.model(new_ids, self.mask[:, :length], self.cache, last_only=True)
        return logits[:, -1].float()

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search's row selection; beams move within their input's group, so the encoder keys/values
        (the same for the whole group) stay."""
        self.cache.reorder(index, cross=False)


class Stopping:
    """Which rows just finished: last token is an EOS, or the text ends in a stop string (decoded)."""

    def __init__(self, eos: list[int] | None, stop_strings, tokenizer, device):
        self.eos = torch.tensor(eos, device=device) if eos else None
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        if stop_strings and tokenizer is None:
            raise ValueError("`stop_strings` need the tokenizer: pass `tokenizer=` to generate.")
        self.stop_strings = list(stop_strings or [])
        self.tokenizer = tokenizer
        # Tokens decoded per check: enough to hold the longest stop string plus the token that ends it.
        self.window = max((len(s) for s in self.stop_strings), default=0) + 2

    @property
    def has_eos(self) -> bool:
        return self.eos is not None

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (N, L) → (N,) bool."""
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        if self.eos is not None:
            done |= torch.isin(ids[:, -1], self.eos)
        if self.stop_strings:  # decoding needs the ids on the host: only with stop strings
            hits = [self._ends_with_stop(row) for row in ids[:, -self.window:].tolist()]
            done |= torch.tensor(hits, device=ids.device)
        return done

    def _ends_with_stop(self, row: list[int]) -> bool:
        # A stop string counts once it overlaps the newest token (as transformers' StopStringCriteria).
        text = self.tokenizer.decode(row)
        before = len(self.tokenizer.decode(row[:-1]))
        return any(text.find(s, max(0, before - len(s) + 1)) != -1 for s in self.stop_strings)


@torch.inference_mode()
def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             config: GenerationConfig | None = None, streamer=None, generator: torch.Generator | None = None,
             tokenizer=None, decoder_prompt: torch.Tensor | None = None, logits_processors: list | None = None,
             attention_probe=None) -> torch.Tensor:
    """Generate continuations of `input_ids` (B, S); returns token ids (B * num_return_sequences, T).

    Decoder-only models return prompt + new tokens (left padding kept); encoder-decoders return the
    decoder sequence, starting with decoder_start_token_id. Rows that finish early are padded with
    pad_token_id (or the first eos_token_id when the model has no pad token).
    `config` defaults to the model's own (`GenerationConfig.for_model`); `generator` makes sampling
    reproducible; `streamer` receives the prompt then each new token (batch of one, no beams);
    `tokenizer` is needed only for `stop_strings`. An encoder-decoder may take non-token encoder inputs
    (a spectrogram) and a `decoder_prompt` (B, P) to continue instead of decoder_start_token_id (Whisper's
    start, language and task tokens); processors then see the prompt as part of `ids`. `logits_processors`
    are a model's own rules (callables (ids, scores) → scores) run after the configured suppressions.
    `attention_probe` (a `probe.CrossAttentionProbe`) records chosen cross-attention heads' weights per step.
    """
    config = config if config is not None else GenerationConfig.for_model(model)
    config.validate()
    if streamer is not None and config.num_beams > 1:
        raise ValueError("`streamer` cannot be used with beam search; set `num_beams=1`.")
    if input_ids.dim() != 2 and not model.is_encoder_decoder:
        raise ValueError(f"`input_ids` must have shape (batch, length); got {tuple(input_ids.shape)}.")
    device, pad, eos = input_ids.device, config.pad_id, config.eos_ids
    if attention_mask is None and input_ids.dim() == 2 and not input_ids.is_floating_point():
        attention_mask = _infer_attention_mask(input_ids, pad, eos)
    expand = max(config.num_beams, config.num_return_sequences)
    encoder_hidden = encoder_mask = mask = None
    if model.is_encoder_decoder:
        start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
        if start is None and decoder_prompt is None:
            raise ValueError("Encoder-decoder generation needs `decoder_start_token_id` or `bos_token_id`.")
        # One encoder row per input, not per beam: cross-attention reads it for all the input's rows.
        encoder_hidden, encoder_mask = model.encode(input_ids, attention_mask), attention_mask
        prompt = torch.full((input_ids.shape[0] * expand, 1), start, dtype=torch.long, device=device) \
            if decoder_prompt is None else decoder_prompt.to(device).repeat_interleave(expand, 0)
    else:
        prompt = input_ids.repeat_interleave(expand, 0)
    N, P = prompt.shape
    model_config = getattr(model, "config", None)
    max_length, min_length = config.resolve_lengths(P, getattr(model_config, "max_position_embeddings", None))
    if not model.is_encoder_decoder:
        mask = torch.ones(N, max_length, dtype=attention_mask.dtype, device=device)
        mask[:, :P] = attention_mask.repeat_interleave(expand, 0)
    processors = build_processors(config, P, max_length, min_length, getattr(model_config, "vocab_size", None),
                                  device, logits_processors)
    stopping = Stopping(eos, config.stop_strings, tokenizer, device)
    decoder = Decoder(model, N, max_length, mask, encoder_hidden, encoder_mask, attention_probe)
    if config.num_beams > 1:
        return beam_search(decoder, prompt, config, max_length, processors, stopping, generator)
    if streamer is not None:
        streamer.put(prompt.cpu())
    tokens = torch.empty(N, max_length, dtype=torch.long, device=device)
    tokens[:, :P] = prompt
    try:
        length = _sample(decoder, tokens, P, max_length, processors, stopping, config.do_sample, pad, generator,
                         streamer)
    finally:
        if streamer is not None:  # also on failure, so a consumer thread is never left waiting
            streamer.end()
    return tokens[:, :length]


def _sample(decoder: Decoder, tokens: torch.Tensor, prompt_length: int, max_length: int, processors,
            stopping: Stopping, do_sample: bool, pad: int | None, generator, streamer) -> int:
    """Greedy or multinomial decoding in place into `tokens` (N, max_length); returns the final length."""
    unfinished = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    start, length = 0, prompt_length
    while True:
        scores = apply(processors, tokens[:, :length], decoder.step(tokens[:, start:length], length))  # (N, V)
        if do_sample:
            next_ids = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)
        else:
            next_ids = scores.argmax(-1)
        if stopping.has_eos:  # finished rows keep receiving padding
            next_ids = torch.where(unfinished, next_ids, pad)
        tokens[:, length] = next_ids
        start, length = length, length + 1
        if streamer is not None:
            streamer.put(next_ids.cpu())
        if length >= max_length:
            return length
        unfinished &= ~stopping(tokens[:, :length])
        if not bool(unfinished.any()):  # the one host sync per step
            return length


def _infer_attention_mask(input_ids: torch.Tensor, pad: int | None, eos: list[int] | None) -> torch.Tensor:
    """transformers' guess when no mask is given: padding is pad_token_id, unless pad is also an EOS."""
    if pad is not None and (eos is None or pad not in eos) and bool((input_ids == pad).any()):
        return (input_ids != pad).long()
    return torch.ones_like(input_ids)
