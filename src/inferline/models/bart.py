"""BART (and distilbart), mBART and Marian: one encoder-decoder that differs by data.

Matches transformers 4.57.6 `modeling_bart`, `modeling_mbart` and `modeling_marian`. The variants differ in
where LayerNorm sits (BART, Marian post-norm; mBART pre-norm with a final norm per stack), whether the
embeddings are normed, and positions (a learned table offset by 2 for BART/mBART; fixed sinusoids with the
cosines in the second half for Marian). Marian may keep separate encoder/decoder embeddings.
Sequence classification pools the decoder state at each row's last eos token (bart-large-mnli & co.).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .config import ModelConfig
from .heads import ClassificationHead
from .kernels import FastLinear
from .layers import MLP, Attention, KVCache, clamp_fp16_overflow, decode_stack, new_cache, padding_mask
from .registry import Family, UnsupportedModelError
from .weights import WeightMap


HEADS = ("base", "seq2seq-lm", "sequence-classification")


@dataclass(frozen=True)
class Variant:
    learned_positions: bool  # learned table offset by 2, else fixed sinusoids
    pre_norm: bool  # LayerNorm before each sub-layer (mBART) or after the residual (BART, Marian)
    embedding_norm: bool  # `layernorm_embedding` after token + position embeddings
    final_norm: bool  # `layer_norm` at the end of each stack
    wrap_shift: bool  # decoder inputs for base/classification start with the row's last token (mBART)
    heads: tuple[str, ...] = HEADS  # Marian: transformers' MarianModel needs decoder inputs; no classification
    key_bias: bool = True  # k_proj has a bias (Whisper's has none)


VARIANTS = {
    "bart": Variant(learned_positions=True, pre_norm=False, embedding_norm=True, final_norm=False, wrap_shift=False),
    "mbart": Variant(learned_positions=True, pre_norm=True, embedding_norm=True, final_norm=True, wrap_shift=True),
    "marian": Variant(learned_positions=False, pre_norm=False, embedding_norm=False, final_norm=False,
                      wrap_shift=False, heads=("seq2seq-lm",)),
}
POSITION_OFFSET = 2  # BART's learned table starts 2 rows in (a fairseq leftover)


@dataclass
class BartConfig(ModelConfig):
    vocab_size: int = 50265
    decoder_vocab_size: int | None = None
    d_model: int = 1024
    encoder_layers: int = 12
    decoder_layers: int = 12
    encoder_attention_heads: int = 16
    decoder_attention_heads: int = 16
    encoder_ffn_dim: int = 4096
    decoder_ffn_dim: int = 4096
    activation_function: str = "gelu"
    scale_embedding: bool = False
    max_position_embeddings: int = 1024
    num_labels: int = 3
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    decoder_start_token_id: int | None = 2
    tie_word_embeddings: bool = True
    share_encoder_decoder_embeddings: bool = True
    # transformers' config defaults where mBART / Marian differ from BART (for keys a config.json leaves out)
    type_defaults: ClassVar[dict[str, dict]] = {
        "mbart": dict(decoder_start_token_id=None, num_labels=2),
        "marian": dict(vocab_size=58101, pad_token_id=58100, eos_token_id=0, bos_token_id=None,
                       decoder_start_token_id=58100, num_labels=2),
    }

    def __post_init__(self):
        self.variant = VARIANTS.get(self.model_type or "bart")
        if self.variant is None:
            raise UnsupportedModelError(f"model_type {self.model_type!r} is not one of {sorted(VARIANTS)}.")
        self.shared_embeddings = self.share_encoder_decoder_embeddings
        # The decoder's vocabulary differs only for Marian with separate embeddings.
        self.target_vocab_size = self.vocab_size if self.shared_embeddings else \
            (self.decoder_vocab_size or self.vocab_size)


def split_sinusoids(positions: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """(T,) positions → (T, dim) Marian table rows: sines in the first ceil(dim/2) columns, cosines after,
    computed in float64 as transformers builds its table."""
    freq = torch.pow(10000.0, 2 * torch.arange((dim + 1) // 2, dtype=torch.float64, device=positions.device) / dim)
    angles = positions.to(torch.float64)[:, None] / freq
    return torch.cat((angles.sin(), angles[:, : dim // 2].cos()), dim=-1).to(dtype)


class BartLayer(nn.Module):
    """self-attention (+ cross-attention in the decoder) + feed-forward, each with residual and LayerNorm."""

    def __init__(self, cfg: BartConfig, heads: int, ffn_dim: int, is_decoder: bool, layer_idx: int):
        super().__init__()
        C, names = cfg.d_model, ("q_proj", "k_proj", "v_proj", "out_proj")
        self.self_attn = Attention(C, heads, names=names, causal=is_decoder, layer_idx=layer_idx,
                                  key_bias=cfg.variant.key_bias)
        self.self_attn_layer_norm = nn.LayerNorm(C)
        self.encoder_attn = Attention(C, heads, names=names, layer_idx=layer_idx, key_bias=cfg.variant.key_bias) if is_decoder else None
        self.encoder_attn_layer_norm = nn.LayerNorm(C) if is_decoder else None
        self.mlp = MLP(C, ffn_dim, cfg.activation_function, names=("fc1", "fc2"))  # the layer's fc1/fc2
        self.final_layer_norm = nn.LayerNorm(C)
        self.pre_norm = cfg.variant.pre_norm

    def _residual(self, x, norm, sublayer):
        return x + sublayer(norm(x)) if self.pre_norm else norm(x + sublayer(x))

    def forward(self, x, mask, source=None, cross_mask=None, cache=None):
        x = self._residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, mask, cache))
        if self.encoder_attn is not None:
            x = self._residual(x, self.encoder_attn_layer_norm,
                               lambda h: self.encoder_attn(h, cross_mask, cache, source))
        x = self._residual(x, self.final_layer_norm, self.mlp)
        return x if self.encoder_attn is not None else clamp_fp16_overflow(x, nan_too=True)


class BartStack(nn.Module):
    """Embeddings (scaled tokens + positions) → layers → optional final norm; encoder or decoder."""

    def __init__(self, cfg: BartConfig, is_decoder: bool):
        super().__init__()
        C, v = cfg.d_model, cfg.variant
        vocab = cfg.target_vocab_size if is_decoder else cfg.vocab_size
        self.embed_tokens = None if cfg.shared_embeddings else nn.Embedding(vocab, C)
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings + POSITION_OFFSET, C) \
            if v.learned_positions else None
        self.layernorm_embedding = nn.LayerNorm(C) if v.embedding_norm else None
        heads, ffn = (cfg.decoder_attention_heads, cfg.decoder_ffn_dim) if is_decoder else \
            (cfg.encoder_attention_heads, cfg.encoder_ffn_dim)
        count = cfg.decoder_layers if is_decoder else cfg.encoder_layers
        self.layers = nn.ModuleList(BartLayer(cfg, heads, ffn, is_decoder, i) for i in range(count))
        self.layer_norm = nn.LayerNorm(C) if v.final_norm else None
        self.embed_scale = math.sqrt(C) if cfg.scale_embedding else 1.0

    def embed(self, input_ids: torch.Tensor, shared: nn.Embedding | None, start: int) -> torch.Tensor:
        tokens = self.embed_tokens if self.embed_tokens is not None else shared
        x = tokens(input_ids) * self.embed_scale  # (B, T, C)
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        if self.embed_positions is not None:
            x = x + self.embed_positions(positions + POSITION_OFFSET)
        else:
            x = x + split_sinusoids(positions, x.shape[-1], x.dtype)
        return self.layernorm_embedding(x) if self.layernorm_embedding is not None else x

    def forward(self, x, mask, source=None, cross_mask=None, cache=None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask, source, cross_mask, cache)
        return self.layer_norm(x) if self.layer_norm is not None else x


class BartModel(nn.Module):
    """Shared embeddings + encoder + decoder. Called directly (the base head) it runs the decoder over the
    inputs shifted right, as transformers' BartModel does without decoder_input_ids."""

    def __init__(self, cfg: BartConfig):
        super().__init__()
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model) if cfg.shared_embeddings else None
        self.encoder = BartStack(cfg, is_decoder=False)
        self.decoder = BartStack(cfg, is_decoder=True)
        self.cfg = cfg

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.encoder.embed(input_ids, self.shared, 0)
        return self.encoder(x, padding_mask(attention_mask, x.dtype))  # (B, S, C)

    def decode(self, decoder_input_ids, encoder_hidden, encoder_attention_mask=None, cache=None) -> torch.Tensor:
        """Decoder states (B, T, C); with a cache, the new tokens follow the `cache.length` cached ones."""
        x = self.decoder.embed(decoder_input_ids, self.shared, cache.length if cache is not None else 0)
        return decode_stack(self.decoder, x, encoder_hidden, encoder_attention_mask, cache)

    def shift_right(self, input_ids: torch.Tensor) -> torch.Tensor:
        shifted = input_ids.roll(1, dims=1)
        if self.cfg.variant.wrap_shift:  # mBART: start with each row's last non-pad token (its language code)
            last = (input_ids != self.cfg.pad_token_id).sum(1, keepdim=True) - 1
            shifted[:, :1] = input_ids.gather(1, last)
        else:
            shifted[:, 0] = self.cfg.decoder_start_token_id
        return shifted

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        encoded = self.encode(input_ids, attention_mask)
        return self.decode(self.shift_right(input_ids), encoded, attention_mask)  # (B, T, C)


class BartForConditionalGeneration(nn.Module):
    """Encoder-decoder LM: `encode` once, then `decode` (with a KVCache) per step; see generation/."""

    is_encoder_decoder = True

    def __init__(self, cfg: BartConfig):
        super().__init__()
        self.model = BartModel(cfg)
        self.lm_head = FastLinear(cfg.d_model, cfg.target_vocab_size, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(1, cfg.target_vocab_size))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.encode(input_ids, attention_mask)

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden: torch.Tensor,
               encoder_attention_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        hidden = self.model.decode(decoder_input_ids, encoder_hidden, encoder_attention_mask, cache)
        return self.lm_head(hidden) + self.final_logits_bias  # (B, T, V)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None) -> torch.Tensor:
        """Teacher-forced logits (B, T, V); decoder inputs default to the inputs shifted right."""
        if decoder_input_ids is None:
            decoder_input_ids = self.model.shift_right(input_ids)
        return self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask)

    new_cache = new_cache


class BartForSequenceClassification(nn.Module):
    """Decoder state at each row's last eos → dense → tanh → out_proj (BartForSequenceClassification)."""

    def __init__(self, cfg: BartConfig):
        super().__init__()
        self.model = BartModel(cfg)
        self.classification_head = ClassificationHead(cfg.d_model, cfg.num_labels, "tanh")
        self.eos_token_id = cfg.eos_token_id

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        hidden = self.model(input_ids, attention_mask)  # (B, T, C)
        eos = input_ids == self.eos_token_id
        counts = eos.sum(1)
        if not bool(counts[0]) or bool((counts != counts[0]).any()):
            raise ValueError(f"All examples must have the same number of <eos> tokens (eos_token_id="
                             f"{self.eos_token_id}); found {counts.tolist()}.")
        T = input_ids.shape[1]
        last = T - 1 - eos.flip(1).int().argmax(1)  # (B,) index of each row's last eos
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, C)
        return self.classification_head(pooled[:, None])  # (B, num_labels)


def build(cfg: BartConfig, head: str) -> nn.Module:
    if head not in cfg.variant.heads:
        raise UnsupportedModelError(f"model_type {cfg.model_type!r} has no {head!r} head; it offers: "
                                    f"{', '.join(cfg.variant.heads)}.")
    if head == "seq2seq-lm":
        return BartForConditionalGeneration(cfg)
    if head == "base":
        return BartModel(cfg)
    if head == "sequence-classification":
        return BartForSequenceClassification(cfg)
    raise UnsupportedModelError(f"no head {head!r}")


FFN_RENAMES = [(r"\.layers\.(\d+)\.(fc1|fc2)\.", r".layers.\1.mlp.\2.")]  # our MLP holds the layer's fc1/fc2


def weight_map(cfg: BartConfig, head: str) -> WeightMap:
    renames = list(FFN_RENAMES)
    unused = [r"(encoder|decoder)\.version$"]  # fairseq leftovers in old checkpoints
    tied: dict[str, str] = {}
    if cfg.shared_embeddings:  # tied copies; some checkpoints keep only these (bart-large-cnn: the decoder's)
        renames.append((r"(encoder|decoder)\.embed_tokens\.weight$", "shared.weight"))
    if not cfg.variant.learned_positions:  # fixed sinusoids, computed rather than loaded
        unused.append(r"embed_positions\.weight$")
    if head == "seq2seq-lm" and cfg.tie_word_embeddings:
        tied["lm_head.weight"] = "model.shared.weight" if cfg.shared_embeddings else "model.decoder.embed_tokens.weight"
    return WeightMap(renames, unused, tied)


FAMILY = Family("bart", BartConfig, HEADS, build, weight_map,
                lambda cfg: "model", input_names=("input_ids", "attention_mask"))
