"""Generic task heads over any encoder backbone.

A backbone is any module with `forward(input_ids, attention_mask=None, token_type_ids=None) -> (B, T, C)`;
the token and span heads pass any further inputs on to it by name (LayoutLM's `bbox`, LayoutLMv3's
`pixel_values`). A backbone whose output holds more positions than the input (LayoutLMv3's image patches
after the text) is cut back to the input's tokens there.
Head models keep the backbone under the family's checkpoint prefix (`bert.`, `roberta.`, ...) so that
their state-dict names equal the checkpoint's; families map their own head names onto these.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .kernels import FastLinear
from .layers import activation, new_cache

HEADS = ("base", "sequence-classification", "token-classification", "question-answering", "masked-lm")


class ClassificationHead(nn.Module):
    """First token → [dense → activation] → out_proj: the sentence-classification head of every family;
    `first_token=False` applies it to every token (LayoutLMv3's span head)."""

    def __init__(self, hidden_size: int, num_labels: int, act: str | None = "tanh", first_token: bool = True):
        super().__init__()
        self.dense = FastLinear(hidden_size, hidden_size) if act else None
        self.act = activation(act) if act else None
        self.out_proj = FastLinear(hidden_size, num_labels)
        self.first_token = first_token

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden[:, 0] if self.first_token else hidden  # (B, C) or (B, T, C)
        if self.dense is not None:
            x = self.act(self.dense(x))
        return self.out_proj(x)  # (B, num_labels)


class MaskedLMHead(nn.Module):
    """dense → activation → LayerNorm → decoder (+ bias): the masked-LM head; decoder usually tied."""

    def __init__(self, hidden_size: int, embedding_size: int, vocab_size: int, act: str, eps: float):
        super().__init__()
        self.dense = FastLinear(hidden_size, embedding_size)
        self.act = activation(act)
        self.LayerNorm = nn.LayerNorm(embedding_size, eps=eps)
        self.decoder = FastLinear(embedding_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(self.act(self.dense(hidden)))) + self.bias  # (B, T, V)


class SpanLogits(NamedTuple):
    start_logits: torch.Tensor  # (B, T)
    end_logits: torch.Tensor  # (B, T)


class _WithBackbone(nn.Module):
    def __init__(self, backbone: nn.Module, prefix: str):
        super().__init__()
        self.backbone_prefix = prefix
        self.add_module(prefix, backbone)

    @property
    def backbone(self) -> nn.Module:
        return getattr(self, self.backbone_prefix)


class SequenceClassificationModel(_WithBackbone):
    def __init__(self, backbone: nn.Module, prefix: str, hidden_size: int, num_labels: int,
                 act: str | None = "tanh"):
        super().__init__(backbone, prefix)
        self.classifier = ClassificationHead(hidden_size, num_labels, act)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return self.classifier(self.backbone(input_ids, attention_mask, token_type_ids))


class TokenClassificationModel(_WithBackbone):
    def __init__(self, backbone: nn.Module, prefix: str, hidden_size: int, num_labels: int):
        super().__init__(backbone, prefix)
        self.classifier = FastLinear(hidden_size, num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **inputs) -> torch.Tensor:
        hidden = self.backbone(input_ids, attention_mask, token_type_ids, **inputs)
        return self.classifier(hidden[:, : input_ids.shape[1]])  # (B, T, L)


class QuestionAnsweringModel(_WithBackbone):
    """Span logits from the backbone's token states; `qa_outputs` is one linear layer, or the family's own
    module (LayoutLMv3's classification-style dense → tanh → out_proj)."""

    def __init__(self, backbone: nn.Module, prefix: str, hidden_size: int, qa_outputs: nn.Module | None = None):
        super().__init__(backbone, prefix)
        self.qa_outputs = qa_outputs if qa_outputs is not None else FastLinear(hidden_size, 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **inputs) -> SpanLogits:
        hidden = self.backbone(input_ids, attention_mask, token_type_ids, **inputs)
        logits = self.qa_outputs(hidden[:, : input_ids.shape[1]])  # (B, T, 2): text tokens only
        start, end = logits.unbind(-1)
        return SpanLogits(start.contiguous(), end.contiguous())


class MaskedLMModel(_WithBackbone):
    def __init__(self, backbone: nn.Module, prefix: str, hidden_size: int, embedding_size: int, vocab_size: int,
                 act: str, eps: float, head_name: str = "lm_head"):
        super().__init__(backbone, prefix)
        self.head_name = head_name
        self.add_module(head_name, MaskedLMHead(hidden_size, embedding_size, vocab_size, act, eps))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return getattr(self, self.head_name)(self.backbone(input_ids, attention_mask, token_type_ids))


def encoder_head(head: str, backbone: nn.Module, prefix: str, hidden_size: int, num_labels: int,
                 classifier_act: str | None, mlm: tuple) -> nn.Module:
    """The five encoder heads over any backbone, as every encoder family builds them.

    classifier_act: the sentence head's activation (BERT's pooler tanh, DistilBERT relu, ...);
    mlm: (embedding_size, vocab_size, activation, eps, module name) of the masked-LM head.
    """
    if head == "base":
        return backbone
    if head == "sequence-classification":
        return SequenceClassificationModel(backbone, prefix, hidden_size, num_labels, classifier_act)
    if head == "token-classification":
        return TokenClassificationModel(backbone, prefix, hidden_size, num_labels)
    if head == "question-answering":
        return QuestionAnsweringModel(backbone, prefix, hidden_size)
    if head == "masked-lm":
        return MaskedLMModel(backbone, prefix, hidden_size, *mlm)
    raise ValueError(f"Unknown head {head!r}; encoder heads: {', '.join(HEADS)}.")


class CausalLMModel(_WithBackbone):
    """A decoder backbone (with `new_cache`) and a bias-free `lm_head`: the causal-LM head of every decoder.

    `last_only` computes logits for the final position alone: a prompt's prefill needs no more, and the
    vocabulary projection over every prompt position is the costliest matmul of generation.
    """

    is_encoder_decoder = False

    def __init__(self, backbone: nn.Module, prefix: str, hidden_size: int, vocab_size: int):
        super().__init__(backbone, prefix)
        self.lm_head = FastLinear(hidden_size, vocab_size, bias=False)

    new_cache = new_cache

    def forward(self, input_ids, attention_mask=None, cache=None, position_ids=None,
                last_only: bool = False, **cross) -> torch.Tensor:
        """`cross`: the encoder output a cross-attending backbone reads (encoder_hidden=, encoder_mask=)."""
        hidden = self.backbone(input_ids, attention_mask, cache, position_ids, **cross)  # (B, T, C)
        return self.lm_head(hidden[:, -1:] if last_only else hidden)  # (B, T or 1, V)


def decoder_head(head: str, backbone: nn.Module, prefix: str, hidden_size: int, vocab_size: int) -> nn.Module:
    """The decoder-only heads over any decoder backbone: "base" is the backbone, "causal-lm" adds lm_head."""
    if head == "base":
        return backbone
    if head == "causal-lm":
        return CausalLMModel(backbone, prefix, hidden_size, vocab_size)
    raise ValueError(f"Unknown head {head!r}; decoder heads: base, causal-lm.")


# ----- vision -----
POOLS = {
    "cls": lambda out: out.last_hidden_state[:, 0],  # (B, C)
    "distillation": lambda out: out.last_hidden_state[:, 1],
    "cls+mean": lambda out: torch.cat((out.last_hidden_state[:, 0], out.last_hidden_state[:, 1:].mean(1)), -1),
    "pooler": lambda out: out.pooler_output,
}


class ImageClassificationModel(_WithBackbone):
    """A vision backbone → pooled features → classifier; several classifiers (DeiT's cls + distillation) are
    averaged. `classifiers`: module name → (module, pool), pool one of POOLS."""

    def __init__(self, backbone: nn.Module, prefix: str, classifiers: dict[str, tuple[nn.Module, str]]):
        super().__init__(backbone, prefix)
        self.pools = {}
        for name, (module, pool) in classifiers.items():
            self.add_module(name, module)
            self.pools[name] = POOLS[pool]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.backbone(pixel_values)
        logits = [getattr(self, name)(pool(out)) for name, pool in self.pools.items()]
        return logits[0] if len(logits) == 1 else sum(logits) / len(logits)  # (B, num_labels)
