"""Whisper (transformers 4.57.6 `modeling_whisper`): every size, `.en` and multilingual, distil-whisper.

The encoder reads a log-mel spectrogram (num_mel_bins, 3000) through two GELU convolutions (the second
halves time), adds fixed positions and runs pre-norm layers; the decoder is BART's pre-norm decoder
layer (shared from bart.py: self-attention with the KV cache, cross-attention, feed-forward) over
learned positions, with the output projection tied to the token embeddings. Decoding goes through
`inferline.generation`; the Whisper-specific rules (prompt tokens, timestamp logits) are data and
processors handed to it by the speech pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .bart import FFN_RENAMES, BartLayer, Variant
from .config import ModelConfig
from .kernels import FastLinear as Linear
from .layers import KVCache, causal_mask, new_cache
from .registry import Family
from .weights import WeightMap

HEADS = ("speech-seq2seq",)
WHISPER_VARIANT = Variant(learned_positions=True, pre_norm=True, embedding_norm=False, final_norm=True,
                          wrap_shift=False, key_bias=False)


@dataclass
class WhisperConfig(ModelConfig):
    vocab_size: int = 51865
    num_mel_bins: int = 80
    d_model: int = 384
    encoder_layers: int = 4
    decoder_layers: int = 4
    encoder_attention_heads: int = 6
    decoder_attention_heads: int = 6
    encoder_ffn_dim: int = 1536
    decoder_ffn_dim: int = 1536
    activation_function: str = "gelu"
    max_source_positions: int = 1500
    max_target_positions: int = 448
    scale_embedding: bool = False
    pad_token_id: int | None = 50256
    bos_token_id: int | None = 50257
    eos_token_id: int | None = 50257
    decoder_start_token_id: int | None = 50258
    median_filter_width: int = 7

    def __post_init__(self):
        self.variant = WHISPER_VARIANT
        self.max_position_embeddings = self.max_target_positions

    @property
    def input_frames(self) -> int:
        """Mel frames the encoder takes: two per position (conv2 has stride 2)."""
        return 2 * self.max_source_positions


class WhisperEncoder(nn.Module):
    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        C = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.num_mel_bins, C, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(C, C, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(cfg.max_source_positions, C)
        self.layers = nn.ModuleList(BartLayer(cfg, cfg.encoder_attention_heads, cfg.encoder_ffn_dim, False, i)
                                    for i in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(C)
        self.input_frames = cfg.input_frames

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        if input_features.shape[-1] != self.input_frames:
            raise ValueError(f"Whisper's encoder takes input_features of {self.input_frames} frames; got "
                             f"{input_features.shape[-1]}. Pad or cut the audio to the extractor's window.")
        x = F.gelu(self.conv1(input_features.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S, C)
        x = x + self.embed_positions.weight
        for layer in self.layers:
            x = layer(x, None)
        return self.layer_norm(x)


class WhisperDecoder(nn.Module):
    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        C = cfg.d_model
        self.embed_tokens = nn.Embedding(cfg.vocab_size, C)
        self.embed_positions = nn.Embedding(cfg.max_target_positions, C)
        self.layers = nn.ModuleList(BartLayer(cfg, cfg.decoder_attention_heads, cfg.decoder_ffn_dim, True, i)
                                    for i in range(cfg.decoder_layers))
        self.layer_norm = nn.LayerNorm(C)

    def forward(self, ids: torch.Tensor, encoder_hidden: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        B, T = ids.shape
        x = self.embed_tokens(ids) + self.embed_positions.weight[start: start + T]
        mask = None if T == 1 else causal_mask(ids.new_ones(B, start + T), T, x.dtype)
        for layer in self.layers:
            x = layer(x, mask, encoder_hidden, None, cache)
        if cache is not None:
            cache.advance(T)
        return self.layer_norm(x)  # (B, T, C)


class WhisperModel(nn.Module):
    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        self.encoder = WhisperEncoder(cfg)
        self.decoder = WhisperDecoder(cfg)


class WhisperForConditionalGeneration(nn.Module):
    """`encode` the spectrogram once, then `decode` with a KVCache per step (see inferline.generation)."""

    is_encoder_decoder = True

    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        self.cfg = cfg
        self.model = WhisperModel(cfg)
        self.proj_out = Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def encode(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.encoder(input_features)  # (B, S, C); Whisper attends to the whole window

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden: torch.Tensor,
               encoder_attention_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        return self.proj_out(self.model.decoder(decoder_input_ids, encoder_hidden, cache))  # (B, T, V)

    def forward(self, input_features: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.decode(decoder_input_ids, self.encode(input_features))

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        return new_cache(self, batch_size, max_length)


def build(cfg: WhisperConfig, head: str) -> nn.Module:
    return WhisperForConditionalGeneration(cfg)


def weight_map(cfg: WhisperConfig, head: str) -> WeightMap:
    return WeightMap(list(FFN_RENAMES), [], {"proj_out.weight": "model.decoder.embed_tokens.weight"})


FAMILY = Family("whisper", WhisperConfig, HEADS, build, weight_map, lambda cfg: "model",
                input_names=("input_features", "attention_mask"), max_tokens=lambda cfg: None)
