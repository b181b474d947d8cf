"""Class-conditional generated datasets: the class labels and guidance of each sample, checked before any work.

Sample `i` of a dataset generated with `class_labels=[y_0, ..., y_{m-1}]` is of class `y_{i mod m}`, so a sample's
class depends only on its index (like its seed), never on the batch or shard it is generated in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["check_conditioning", "sample_conditioning"]


def _plain(label):
    """A label as JSON stores it in the manifest (numpy scalars become Python ones)."""
    return label.item() if isinstance(label, np.generic) else label


def _label_list(class_labels) -> list:
    """`class_labels` as the manifest stores them: a list of plain (JSON) values, one label or many; `ValueError`
    when empty."""
    if isinstance(class_labels, (torch.Tensor, np.ndarray)):
        class_labels = class_labels.tolist()
    labels = [class_labels] if isinstance(class_labels, (str, int)) else [_plain(y) for y in class_labels]
    if not labels:
        raise ValueError("`class_labels` is empty; pass at least one label (sample i gets label i mod their count).")
    return labels


def check_conditioning(
    pipeline,
    class_labels: Sequence | None,
    guidance_scale: float,
    given_column: str | None = None,
    max_tries: int = 100,
) -> dict:
    """
    The generation settings of `class_labels`/`guidance_scale` (`{}` for plain sampling, so datasets generated
    without them resume as before), checked by the pipeline itself on one dry conditioning call: unknown labels,
    labels for an unconditional model, guidance without a null class or below 1 raise `ValueError` naming the fix.
    With `given_column`, `class_labels` are values of that generated column, kept by rejection
    ([`sample_given_values`]), and checked by the modality's `given_values`.
    """
    if given_column is not None:
        return _given_settings(pipeline, class_labels, guidance_scale, given_column, max_tries)
    if class_labels is None and guidance_scale == 1.0:
        return {}
    settings: dict = {"guidance_scale": guidance_scale}
    labels = None
    if class_labels is not None:
        labels = settings["class_labels"] = _label_list(class_labels)
    try:
        model_kwargs = pipeline.prepare_conditioning(
            len(labels or [None]), torch.Generator().manual_seed(0), class_labels=labels, guidance_scale=guidance_scale
        )
    except TypeError as err:  # the skeleton's refusal of conditioning arguments (`XAIPipelineMixin`)
        raise ValueError(
            f"`class_labels`/`guidance_scale` were given but a {type(pipeline).__name__} is not class-conditional; "
            "drop them."
        ) from err
    if labels is not None:  # the classes themselves, however spelled (`0` from the library, "0" or "a" from the CLI)
        settings["class_indices"] = model_kwargs["class_labels"].tolist()
    return settings


def _given_settings(pipeline, class_labels, guidance_scale: float, column: str, max_tries: int) -> dict:
    from .samples import sample_modality

    if class_labels is None:
        raise ValueError(
            f"--given_column {column} needs --class_labels: the values of {column!r} the samples must hold."
        )
    if guidance_scale != 1.0:
        raise ValueError(
            "--guidance_scale guides a model's own condition column; rows with a --given_column are kept by "
            "rejection, which does not guide: drop --guidance_scale."
        )
    if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
        raise ValueError(f"`max_tries` must be a positive integer, got {max_tries!r}.")
    labels = _label_list(class_labels)
    sample_modality(pipeline).given_values(pipeline, column, labels)  # raises naming the column or value and the fix
    return {"given_column": column, "class_labels": labels, "max_tries": max_tries}


def sample_conditioning(settings: dict, indices: Sequence[int]) -> dict:
    """The conditioning keywords of the samples `indices` (for [`Modality.sample_batch`]): sample `i` of class
    `class_labels[i mod len(class_labels)]`, all at the recorded guidance scale; `{}` for plain sampling."""
    if "guidance_scale" not in settings:
        return {}
    out = {"guidance_scale": settings["guidance_scale"]}
    labels = settings.get("class_labels")
    if labels is not None:
        out["class_labels"] = [labels[i % len(labels)] for i in indices]
    return out
