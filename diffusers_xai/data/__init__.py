"""Datasets → tensors for each modality."""

from .digits import load_digits_dataset, load_digits_tensors

__all__ = ["load_digits_dataset", "load_digits_tensors"]
