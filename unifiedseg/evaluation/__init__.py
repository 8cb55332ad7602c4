"""Metrics and evaluation loops."""

from unifiedseg.evaluation.confusion import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
