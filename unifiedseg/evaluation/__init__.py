"""Metrics and evaluation loops: confusion matrices (`confusion`), how metrics are written to files and
text (`metrics`), validation during training (`validate`) and evaluation in each dataset's own label
space with the result files (`evaluate`)."""

from unifiedseg.evaluation.confusion import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
