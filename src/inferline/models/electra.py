"""ELECTRA discriminator and generator checkpoints: BERT's encoder over embeddings of their own width.

Matches transformers 4.57.6 `modeling_electra`. Embeddings are `embedding_size` wide and, when that
differs from `hidden_size`, `embeddings_project` maps them up. The sequence head uses gelu (not
BERT's tanh), and masked-lm is the generator: `generator_predictions` + a tied `generator_lm_head`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .bert import BertConfig, BertEmbeddings
from .heads import HEADS, encoder_head
from .layers import PostNormEncoder, padding_mask
from .registry import Family, UnsupportedModelError
from .weights import WeightMap


@dataclass
class ElectraConfig(BertConfig):
    """BERT's fields plus embedding_size, with ElectraConfig's defaults."""

    embedding_size: int = 128
    hidden_size: int = 256
    num_attention_heads: int = 4
    intermediate_size: int = 1024


class ElectraModel(nn.Module):
    def __init__(self, cfg: ElectraConfig):
        super().__init__()
        if cfg.position_embedding_type != "absolute":
            raise UnsupportedModelError(
                f"position_embedding_type {cfg.position_embedding_type!r} is not supported; only 'absolute'.")
        self.embeddings = BertEmbeddings.from_config(cfg, size=cfg.embedding_size)
        if cfg.embedding_size != cfg.hidden_size:
            self.embeddings_project = nn.Linear(cfg.embedding_size, cfg.hidden_size)
        self.encoder = PostNormEncoder(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
                                       cfg.intermediate_size, cfg.hidden_act, cfg.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, E)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)  # (B, T, C)
        return self.encoder(x, padding_mask(attention_mask, x.dtype))  # (B, T, C)


def _prefix(cfg: ElectraConfig) -> str:
    return "electra"


def build(cfg: ElectraConfig, head: str) -> nn.Module:
    # the generator's masked-LM head always uses gelu, whatever hidden_act is
    return encoder_head(head, ElectraModel(cfg), "electra", cfg.hidden_size, cfg.num_labels, "gelu",
                        (cfg.embedding_size, cfg.vocab_size, "gelu", cfg.layer_norm_eps, "generator_predictions"))


def weight_map(cfg: ElectraConfig, head: str) -> WeightMap:
    unused = [r"position_ids$", r"token_type_ids$"]
    renames, tied = [], {}
    if head == "base":  # a discriminator or generator checkpoint used as an encoder
        unused += [r"^discriminator_predictions\.", r"^generator_", r"^classifier\.", r"^qa_outputs\."]
    elif head == "masked-lm":
        renames = [(r"^generator_lm_head\.weight$", "generator_predictions.decoder.weight"),
                   (r"^generator_lm_head\.bias$", "generator_predictions.bias")]
        tied["generator_predictions.decoder.weight"] = "electra.embeddings.word_embeddings.weight"
    return WeightMap(renames, unused, tied)


FAMILY = Family("electra", ElectraConfig, HEADS, build, weight_map, _prefix)
