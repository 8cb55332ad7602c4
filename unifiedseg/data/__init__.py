"""Datasets, augmentation and multi-dataset sampling."""
