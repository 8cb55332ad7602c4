"""unifiedseg: train one semantic segmentation model on many datasets through a unified taxonomy."""

__version__ = "0.1.0"
