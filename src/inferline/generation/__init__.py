"""The generation engine: one decoding loop (greedy, sampling, beam search, stopping, streaming) for
every decoder.

A decoder-only model offers:
    new_cache(batch_size, max_length) -> KVCache
    forward(input_ids (B, T), attention_mask (B, S), cache, position_ids (B, T) | None, last_only=False)
        -> logits (B, T, V), or (B, 1, V) with last_only (the engine's prefill needs only the last position)
where attention_mask covers every position so far (cached + new; 1 = real token, 0 = left padding) and
the model writes the new keys/values into `cache` and advances it.

An encoder-decoder additionally offers:
    encode(input_ids (B, S), attention_mask (B, S)) -> encoder_hidden (B, S, C)
    decode(decoder_input_ids (B, T), encoder_hidden, encoder_attention_mask (B, S), cache) -> logits (B, T, V)
and `is_encoder_decoder = True`; `forward` is then not used by the engine. With several beams or return
sequences per input, `decode` gets the encoder output once per input, (B / G, S, C) with its mask: each
encoder row serves G consecutive decoder rows (layers.attention handles that), and the cross-attention
keys/values in the cache keep B / G rows (beam reordering moves rows only within a group, never those).

The engine reads `model.config.vocab_size` (to check bad_words_ids) and
`model.config.max_position_embeddings` (to cap the default length, as transformers does: a family whose
transformers config has no such attribute, like T5, should leave it None).

Using it:
    config = GenerationConfig.for_model(model).update(max_new_tokens=20, num_beams=4)   # kwargs win
    ids = generate(model, input_ids, attention_mask, config)          # (B * num_return_sequences, T)
    ids = generate(model, input_ids, attention_mask, config, streamer=TextIteratorStreamer(tokenizer),
                   generator=torch.Generator().manual_seed(0), tokenizer=tokenizer)

- `GenerationConfig.for_model(model)` / `.from_pretrained(folder, config_dict)`: the checkpoint's defaults
  (generation_config.json, else config.json's generation keys); `.update(**kw)` returns a validated copy
  and raises TypeError naming unknown parameters.
- `generate(...)`: greedy, sampling (`do_sample`, `generator` for reproducibility), beam search and beam
  sampling (`num_beams`), processors (repetition_penalty, no_repeat_ngram_size, bad_words_ids, min_length,
  min_new_tokens, forced_bos/eos, suppress_tokens) and stopping (eos ids, max_length/max_new_tokens,
  stop_strings with `tokenizer=`), token for token as transformers 4.57.6. Decoder-only output is
  prompt + new tokens; encoder-decoder output is the decoder sequence (decoder_start_token_id first).
- `TextIteratorStreamer(tokenizer, skip_prompt=False, timeout=None, **decode_kwargs)`: iterate text pieces
  from another thread while `generate` runs (batch of one, no beams).
"""

from .config import GenerationConfig
from .engine import generate
from .streamers import TextIteratorStreamer, TextStreamer

__all__ = ["GenerationConfig", "generate", "TextIteratorStreamer", "TextStreamer"]
