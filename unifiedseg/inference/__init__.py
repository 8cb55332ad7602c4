"""Inference: `Predictor` loads trained models from a config and checkpoint(s) and predicts images
(`predictor`); whole-image, sliding-window and multi-scale/flip prediction on any model callable (`tiling`);
a trained model exported to ONNX or TorchScript as one module from image to probabilities (`export`)."""

from unifiedseg.inference.predictor import Prediction, Predictor
from unifiedseg.config.inference import InferenceSettings
from unifiedseg.inference.tiling import predict_probs

__all__ = ["InferenceSettings", "Prediction", "Predictor", "predict_probs"]
