"""Evaluation: metrics per task over scikit-learn / seqeval / jiwer / sacrebleu / rouge-score, reports,
charts, and the model comparison behind `inferline eval` and `inferline compare`."""

from .evaluate import evaluate

__all__ = ["evaluate"]
