"""DistilBERT: BERT's post-norm encoder with no token types and its own tensor names.

Matches transformers 4.57.6 `modeling_distilbert`. The backbone is the shared `BertEmbeddings` and
`PostNormEncoder`; the checkpoint's names (q_lin, sa_layer_norm, ffn.lin1, ...) are mapped onto them.
With `sinusoidal_pos_embds` the fixed sin/cos table is still saved as `position_embeddings.weight`,
so it loads like a learned one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .bert import BertEmbeddings
from .config import ModelConfig
from .heads import HEADS, encoder_head
from .layers import padding_mask
from .post_norm import PostNormEncoder
from .registry import Family
from .weights import WeightMap

EPS = 1e-12  # DistilBERT's LayerNorms all use this, whatever the config says
# transformers' attribute_map: a config.json may use the generic names instead of DistilBERT's own.
ALIASES = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}


@dataclass
class DistilBertConfig(ModelConfig):
    vocab_size: int = 30522
    dim: int = 768
    n_layers: int = 6
    n_heads: int = 12
    hidden_dim: int = 3072
    activation: str = "gelu"
    sinusoidal_pos_embds: bool = False

    @classmethod
    def merged_keys(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, **{ours: config[k] for k, ours in ALIASES.items() if k in config}}


class DistilBertModel(nn.Module):
    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg.vocab_size, cfg.dim, cfg.max_position_embeddings, 0, EPS)
        self.transformer = PostNormEncoder(cfg.n_layers, cfg.dim, cfg.n_heads, cfg.hidden_dim, cfg.activation, EPS)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        x = self.embeddings(input_ids, None)  # DistilBERT has no token types
        return self.transformer(x, padding_mask(attention_mask, x.dtype))  # (B, T, C)


def _prefix(cfg: DistilBertConfig) -> str:
    return "distilbert"


def build(cfg: DistilBertConfig, head: str) -> nn.Module:
    # sequence head: pre_classifier → ReLU → classifier
    return encoder_head(head, DistilBertModel(cfg), "distilbert", cfg.dim, cfg.num_labels, "relu",
                        (cfg.dim, cfg.vocab_size, cfg.activation, EPS, "lm_head"))


LAYER = r"(transformer\.layer\.\d+)\."
ENCODER_RENAMES = [
    (LAYER + r"attention\.q_lin\.", r"\1.attention.self.query."),
    (LAYER + r"attention\.k_lin\.", r"\1.attention.self.key."),
    (LAYER + r"attention\.v_lin\.", r"\1.attention.self.value."),
    (LAYER + r"attention\.out_lin\.", r"\1.attention.output.dense."),
    (LAYER + r"sa_layer_norm\.", r"\1.attention.output.LayerNorm."),
    (LAYER + r"ffn\.lin1\.", r"\1.intermediate.dense."),
    (LAYER + r"ffn\.lin2\.", r"\1.output.dense."),
    (LAYER + r"output_layer_norm\.", r"\1.output.LayerNorm."),
]
HEAD_RENAMES = {
    "sequence-classification": [(r"^classifier\.", "classifier.out_proj."),
                                (r"^pre_classifier\.", "classifier.dense.")],
    "masked-lm": [(r"^vocab_transform\.", "lm_head.dense."), (r"^vocab_layer_norm\.", "lm_head.LayerNorm."),
                  (r"^vocab_projector\.weight$", "lm_head.decoder.weight"),
                  (r"^vocab_projector\.bias$", "lm_head.bias")],
}


def weight_map(cfg: DistilBertConfig, head: str) -> WeightMap:
    unused = []
    if head == "base":
        unused += [r"^pre_classifier\.", r"^classifier\.", r"^qa_outputs\.", r"^vocab_"]
    tied = {"lm_head.decoder.weight": "distilbert.embeddings.word_embeddings.weight"} if head == "masked-lm" else {}
    return WeightMap(ENCODER_RENAMES + HEAD_RENAMES.get(head, []), unused, tied)


FAMILY = Family("distilbert", DistilBertConfig, HEADS, build, weight_map, _prefix,
                input_names=("input_ids", "attention_mask"))
