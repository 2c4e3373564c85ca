"""LayoutLM (v1): BERT over text tokens whose embeddings also hold their box on the page.

Matches transformers 4.57.6 `modeling_layoutlm`. The encoder is BERT's; the embeddings add, per token, x/y
tables for both corners of its (x0, y0, x1, y1) box (0–1000) and h/w tables for its size — BertEmbeddings
with `layout_positions`. Positions count from 0 whatever the tokenizer (impira/layoutlm-document-qa pairs
it with a RoBERTa vocabulary). The document-QA head is the extractive span head over the text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .bert import BertConfig, BertModel
from .heads import encoder_head
from .registry import Family
from .weights import WeightMap

DOCUMENT_QA = "document-question-answering"


@dataclass
class LayoutLMConfig(BertConfig):
    max_2d_position_embeddings: int = 1024

    @property
    def roberta_like(self) -> bool:
        return False  # positions from 0 and BERT's type embeddings, whatever vocabulary sits beside it


def _prefix(cfg: LayoutLMConfig) -> str:
    return "layoutlm"


def build(cfg: LayoutLMConfig, head: str) -> nn.Module:
    backbone = BertModel(cfg, layout_positions=cfg.max_2d_position_embeddings)
    return encoder_head("question-answering" if head == DOCUMENT_QA else head, backbone, "layoutlm",
                        cfg.hidden_size, cfg.num_labels, None, ())


def weight_map(cfg: LayoutLMConfig, head: str) -> WeightMap:
    unused = [r"^layoutlm\.pooler\."]
    if head == "base":
        unused += [r"^cls\.", r"^classifier\.", r"^qa_outputs\."]
    return WeightMap([], unused, {})


# The heads whose modules pass `bbox` on to the backbone.
LAYOUT_HEADS = ("base", "token-classification", "question-answering", DOCUMENT_QA)
FAMILY = Family("layoutlm", LayoutLMConfig, LAYOUT_HEADS, build, weight_map, _prefix,
                input_names=("input_ids", "attention_mask", "token_type_ids", "bbox"))
