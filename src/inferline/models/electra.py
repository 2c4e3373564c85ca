"""ELECTRA discriminator and generator checkpoints: BERT's encoder over embeddings of their own width.

Matches transformers 4.57.6 `modeling_electra`. Embeddings are `embedding_size` wide and, when that
differs from `hidden_size`, `embeddings_project` maps them up. The sequence head uses gelu (not
BERT's tanh), and masked-lm is the generator: `generator_predictions` + a tied `generator_lm_head`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .bert import BertConfig, BertModel
from .heads import HEADS, encoder_head
from .registry import Family
from .weights import WeightMap


@dataclass
class ElectraConfig(BertConfig):
    """BERT's fields plus embedding_size, with ElectraConfig's defaults."""

    embedding_size: int = 128
    hidden_size: int = 256
    num_attention_heads: int = 4
    intermediate_size: int = 1024


def _prefix(cfg: ElectraConfig) -> str:
    return "electra"


def build(cfg: ElectraConfig, head: str) -> nn.Module:
    # the generator's masked-LM head always uses gelu, whatever hidden_act is
    mlm = (cfg.embedding_size, cfg.vocab_size, "gelu", cfg.layer_norm_eps, "generator_predictions")
    return encoder_head(head, BertModel(cfg, cfg.embedding_size), "electra", cfg.hidden_size, cfg.num_labels,
                        "gelu", mlm)


def weight_map(cfg: ElectraConfig, head: str) -> WeightMap:
    unused, renames, tied = [], [], {}
    if head == "base":  # a discriminator or generator checkpoint used as an encoder
        unused += [r"^discriminator_predictions\.", r"^generator_", r"^classifier\.", r"^qa_outputs\."]
    elif head == "masked-lm":
        renames = [(r"^generator_lm_head\.weight$", "generator_predictions.decoder.weight"),
                   (r"^generator_lm_head\.bias$", "generator_predictions.bias")]
        tied["generator_predictions.decoder.weight"] = "electra.embeddings.word_embeddings.weight"
    return WeightMap(renames, unused, tied)


FAMILY = Family("electra", ElectraConfig, HEADS, build, weight_map, _prefix)
