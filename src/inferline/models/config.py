"""The config fields every family shares, and `from_hf` that builds a family's dataclass from config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class ModelConfig:
    """Fields the pipelines read from any checkpoint; families subclass and add their own."""

    model_type: str = ""
    id2label: dict[int, str] = field(default_factory=dict)
    label2id: dict[str, int] = field(default_factory=dict)
    num_labels: int = 2
    problem_type: str | None = None
    pad_token_id: int | None = 0
    max_position_embeddings: int = 512
    # The whole config.json, kept for save_pretrained and for task-specific keys.
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # model_type → transformers' defaults where that type's config class differs from this one (mT5, Marian)
    type_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def from_hf(cls, config: dict[str, Any]):
        """Keep the keys this dataclass declares; missing ones take transformers' defaults. `raw` keeps
        config.json as given."""
        merged = cls.merged_keys(config)
        names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
        kwargs = {k: v for k, v in merged.items() if k in names}
        out = cls(**kwargs, raw=dict(config))
        out._finish_labels(merged)
        return out

    @classmethod
    def merged_keys(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The keys the fields are read from (the family hook): config.json with what its model type changes
        merged in: defaults that differ from the class's, values transformers hard-codes, key aliases."""
        return {**cls.type_defaults.get(config.get("model_type"), {}), **config}

    def _finish_labels(self, config: dict[str, Any]) -> None:
        # transformers: id2label wins, else num_labels generic LABEL_i names; keys become ints.
        if self.id2label:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)
        else:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        if not config.get("label2id"):
            self.label2id = {v: k for k, v in self.id2label.items()}
        else:
            self.label2id = {k: int(v) for k, v in self.label2id.items()}
