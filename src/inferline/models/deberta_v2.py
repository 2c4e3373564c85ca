"""DeBERTa-v2 / v3: BERT's post-norm block with disentangled (content ↔ relative-position) attention.

Matches transformers 4.57.6 `modeling_deberta_v2`. Each layer's attention scores are
(q·k + c2p + p2c) / sqrt(D · (1 + number of position terms)), where c2p is the query against the
projected relative-position embedding of (query − key) and p2c the key against that of (key − query).
The position terms are computed per layer and handed to SDPA as an additive mask, beside padding.
Relative distances beyond ±position_buckets/2 fall into logarithmic buckets. Optional parts, all from
config.json: a convolution after the first layer (conv_kernel_size), absolute position embeddings
(position_biased_input), token types, and an embedding projection (embedding_size != hidden_size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .heads import HEADS, encoder_head
from .kernels import FastLinear
from .layers import activation, attention, merge_heads, padding_mask, split_heads
from .post_norm import PostNormEncoderLayer
from .registry import Family
from .weights import WeightMap


@dataclass
class DebertaV2Config(ModelConfig):
    vocab_size: int = 128100
    hidden_size: int = 1536
    num_hidden_layers: int = 24
    num_attention_heads: int = 24
    intermediate_size: int = 6144
    hidden_act: str = "gelu"
    type_vocab_size: int = 0
    layer_norm_eps: float = 1e-7
    embedding_size: int | None = None  # None: hidden_size
    attention_head_size: int | None = None  # None: hidden_size // num_attention_heads
    position_biased_input: bool = True
    relative_attention: bool = False
    max_relative_positions: int = -1
    position_buckets: int = -1
    pos_att_type: list[str] | str | None = None  # ["c2p", "p2c"] or the legacy "c2p|p2c"
    share_att_key: bool = False
    norm_rel_ebd: str = "none"
    conv_kernel_size: int = 0
    conv_groups: int = 1
    conv_act: str = "tanh"
    pooler_hidden_size: int | None = None
    pooler_hidden_act: str = "gelu"
    legacy: bool = True  # masked-lm head named cls.predictions.* (True) or lm_predictions.lm_head.* (False)

    def __post_init__(self):
        if isinstance(self.pos_att_type, str):
            self.pos_att_type = [x.strip() for x in self.pos_att_type.lower().split("|")]
        self.pos_att_type = list(self.pos_att_type or [])
        self.embedding_size = self.embedding_size or self.hidden_size
        self.attention_head_size = self.attention_head_size or self.hidden_size // self.num_attention_heads
        self.pooler_hidden_size = self.pooler_hidden_size or self.hidden_size

    @property
    def max_distance(self) -> int:
        """Longest relative distance told apart; max_relative_positions < 1 means max_position_embeddings."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def position_span(self) -> int:
        """Relative positions on each side of zero: the rel_embeddings table has 2 × this many rows."""
        return self.position_buckets if self.position_buckets > 0 else self.max_distance


def log_bucket(rel: torch.Tensor, buckets: int, max_position: int) -> torch.Tensor:
    """Relative distances → buckets: exact within ±buckets/2, logarithmic out to max_position."""
    mid = buckets // 2
    sign = torch.sign(rel)
    abs_pos = torch.where((rel < mid) & (rel > -mid), torch.tensor(mid - 1).type_as(rel), rel.abs())
    log_pos = torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, rel.type_as(log_pos), log_pos * sign).long()


def relative_indices(cfg: DebertaV2Config, T: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, T) rows of the position projections that c2p and p2c read for each (query, key) pair."""
    pos = torch.arange(T, device=device)
    rel = pos[:, None] - pos[None, :]  # query − key
    if cfg.position_buckets > 0:
        rel = log_bucket(rel, cfg.position_buckets, cfg.max_distance)
    span = cfg.position_span
    return (rel + span).clamp(0, 2 * span - 1), (span - rel).clamp(0, 2 * span - 1)


class DisentangledSelfAttention(nn.Module):
    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        C, self.H = cfg.hidden_size, cfg.num_attention_heads
        inner = self.H * cfg.attention_head_size
        self.query_proj = FastLinear(C, inner)
        self.key_proj = FastLinear(C, inner)
        self.value_proj = FastLinear(C, inner)
        self.c2p, self.p2c = "c2p" in cfg.pos_att_type, "p2c" in cfg.pos_att_type
        self.share_att_key = cfg.share_att_key
        if cfg.relative_attention and not self.share_att_key:
            if self.c2p:
                self.pos_key_proj = FastLinear(C, inner)
            if self.p2c:
                self.pos_query_proj = FastLinear(C, inner)
        # transformers counts the position terms in the scale even when relative attention is off.
        self.scale = 1.0 / math.sqrt(cfg.attention_head_size * (1 + self.c2p + self.p2c))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, rel=None) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.H) for proj in (self.query_proj, self.key_proj, self.value_proj))
        if rel is not None and (self.c2p or self.p2c):
            bias = self.position_scores(q, k, *rel) * self.scale  # (B, H, T, T)
            mask = bias if mask is None else bias + mask
        return merge_heads(attention(q, k, v, mask, scale=self.scale))  # (B, T, H*D)

    def position_scores(self, q, k, rel_embeddings, c2p_index, p2c_index) -> torch.Tensor:
        B, H, T, _ = q.shape
        index = (B, H, T, T)
        score = 0
        if self.c2p:  # query i against position (i − j)
            proj = self.key_proj if self.share_att_key else self.pos_key_proj
            pos_k = split_heads(proj(rel_embeddings)[None], H)  # (1, H, 2S, D)
            score = score + torch.gather(q @ pos_k.transpose(-1, -2), -1, c2p_index.expand(index))
        if self.p2c:  # key j against position (j − i), gathered per key then transposed to (query, key)
            proj = self.query_proj if self.share_att_key else self.pos_query_proj
            pos_q = split_heads(proj(rel_embeddings)[None], H)  # (1, H, 2S, D)
            score = score + torch.gather(k @ pos_q.transpose(-1, -2), -1, p2c_index.expand(index)).transpose(-1, -2)
        return score


class ConvLayer(nn.Module):
    """Convolution over the embeddings, added to the first layer's output (DeBERTa-v2 xlarge/xxlarge)."""

    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        k = cfg.conv_kernel_size
        self.conv = nn.Conv1d(cfg.hidden_size, cfg.hidden_size, k, padding=(k - 1) // 2, groups=cfg.conv_groups)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = activation(cfg.conv_act)

    def forward(self, embeddings: torch.Tensor, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        out = self.conv(embeddings.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        out = self.act(out * keep)
        return self.LayerNorm(x + out) * keep


class DebertaV2Embeddings(nn.Module):
    """word (+ absolute position) (+ token type) → projection to hidden_size → LayerNorm → zero padding."""

    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        E, C = cfg.embedding_size, cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, E)
        if cfg.position_biased_input:
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, E)
        if cfg.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, E)
        if E != C:
            self.embed_proj = FastLinear(E, C, bias=False)
        self.LayerNorm = nn.LayerNorm(C, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, keep: torch.Tensor):
        # keep: (B, T, 1) 1 for real tokens, 0 for padding
        x = self.word_embeddings(input_ids)  # (B, T, E)
        if hasattr(self, "position_embeddings"):
            x = x + self.position_embeddings(torch.arange(input_ids.shape[1], device=input_ids.device))
        if hasattr(self, "token_type_embeddings"):
            x = x + self.token_type_embeddings(token_type_ids if token_type_ids is not None
                                               else torch.zeros_like(input_ids))
        if hasattr(self, "embed_proj"):
            x = self.embed_proj(x)  # (B, T, C)
        return self.LayerNorm(x) * keep


class DebertaV2Encoder(nn.Module):
    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        self.cfg = cfg
        C = cfg.hidden_size
        self.layer = nn.ModuleList(
            PostNormEncoderLayer(C, cfg.num_attention_heads, cfg.intermediate_size, cfg.hidden_act,
                                 cfg.layer_norm_eps, DisentangledSelfAttention(cfg))
            for _ in range(cfg.num_hidden_layers))
        if cfg.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * cfg.position_span, C)
        if "layer_norm" in [x.strip() for x in cfg.norm_rel_ebd.lower().split("|")]:
            self.LayerNorm = nn.LayerNorm(C, eps=cfg.layer_norm_eps)  # normalises rel_embeddings
        self.conv = ConvLayer(cfg) if cfg.conv_kernel_size > 0 else None

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor:
        mask = padding_mask(attention_mask, x.dtype)
        rel = None
        if self.cfg.relative_attention:
            table = self.rel_embeddings.weight  # (2S, C)
            if hasattr(self, "LayerNorm"):
                table = self.LayerNorm(table)
            rel = (table, *relative_indices(self.cfg, x.shape[1], x.device))
        embeddings = x
        for i, layer in enumerate(self.layer):
            x = layer(x, mask, rel)
            if i == 0 and self.conv is not None:
                x = self.conv(embeddings, x, keep)
        return x  # (B, T, C)


class DebertaV2Model(nn.Module):
    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        self.embeddings = DebertaV2Embeddings(cfg)
        self.encoder = DebertaV2Encoder(cfg)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        dtype = self.embeddings.LayerNorm.weight.dtype
        keep = (attention_mask if attention_mask is not None else torch.ones_like(input_ids))[..., None].to(dtype)
        x = self.embeddings(input_ids, token_type_ids, keep)
        return self.encoder(x, attention_mask, keep)


def _prefix(cfg: DebertaV2Config) -> str:
    return "deberta"


def build(cfg: DebertaV2Config, head: str) -> nn.Module:
    # sequence head: ContextPooler (first token → dense → act) → classifier; the non-legacy masked-LM head
    # maps to hidden_size and multiplies by the word embeddings
    E = cfg.embedding_size if cfg.legacy else cfg.hidden_size
    return encoder_head(head, DebertaV2Model(cfg), "deberta", cfg.hidden_size, cfg.num_labels,
                        cfg.pooler_hidden_act, (E, cfg.vocab_size, cfg.hidden_act, cfg.layer_norm_eps, "cls"))


def weight_map(cfg: DebertaV2Config, head: str) -> WeightMap:
    unused = [r"^mask_predictions\."]
    if not cfg.position_biased_input:  # transformers ignores a stray absolute table
        unused.append(r"embeddings\.position_embeddings\.")
    renames, tied = [], {}
    if head == "base":
        unused += [r"^pooler\.", r"^classifier\.", r"^qa_outputs\.", r"^cls\.", r"^lm_predictions\."]
    elif head == "sequence-classification":
        renames = [(r"^pooler\.dense\.", "classifier.dense."),
                   (r"^classifier\.(weight|bias)$", r"classifier.out_proj.\1")]
    elif head == "masked-lm":
        renames = [(r"^cls\.predictions\.transform\.", "cls."), (r"^cls\.predictions\.bias$", "cls.bias"),
                   (r"^cls\.predictions\.decoder\.weight$", "cls.decoder.weight"),
                   (r"^lm_predictions\.lm_head\.", "cls.")]  # legacy=False names
        unused.append(r"^cls\.predictions\.decoder\.bias$")  # the same tensor as cls.predictions.bias
        tied["cls.decoder.weight"] = "deberta.embeddings.word_embeddings.weight"
    return WeightMap(renames, unused, tied)


def _max_tokens(cfg: DebertaV2Config) -> int | None:
    # Relative attention alone has no absolute position table, hence no length limit.
    return cfg.max_position_embeddings if cfg.position_biased_input else None


FAMILY = Family("deberta_v2", DebertaV2Config, HEADS, build, weight_map, _prefix, max_tokens=_max_tokens)
