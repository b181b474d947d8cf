"""
Class labels for class-conditional image training: which column, which classes, label dropout to the null class.

`label_column: auto` (the default) conditions on a `label` column when the dataset has one (the built-in digits do;
so does an `imagefolder` whose images sit in one sub-folder per class) and trains unconditionally otherwise;
`label_column: none` never conditions. A model for K classes gets `num_class_embeds = K + 1` and labels are dropped
to the null class K with probability `class_dropout_prob`, so the same model also samples unconditionally and can be
guided (classifier-free guidance, see `diffusers_xai.pipelines.guidance`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch

from ...utils.coerce import coerce
from ..base import ModalityOptions

__all__ = ["ImageLabels", "ImageOptions", "fit_labels", "resolve_label_column"]

NO_LABELS = (None, "none", "null", False)


@dataclass
class ImageOptions(ModalityOptions):
    """
    The image keys: class conditioning. `label_column`: `auto` = the `label` column when there is one, `none` =
    unconditional, else the column to condition on; `class_dropout_prob`: the share of labels dropped in training
    (the unconditional model classifier-free guidance needs).
    """

    label_column: str | None = "auto"
    class_dropout_prob: float = 0.1

    def validate(self) -> None:
        if self.label_column is False:  # YAML `label_column: false`
            self.label_column = "none"
        self.class_dropout_prob = coerce("class_dropout_prob", self.class_dropout_prob, float)
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise ValueError(
                f"`class_dropout_prob` must be in [0, 1) (0.1 is usual; 0 gives no unconditional model, so no "
                f"guidance), got {self.class_dropout_prob}."
            )


@dataclass
class ImageLabels:
    """The classes of a conditional run: `column`, `names` (class index = position) and the label dropout (applied
    in the training loss with the run's noise generator, so streamed and map-style batches stay equal)."""

    column: str
    names: list[str]
    dropout: float
    is_class_label: bool  # values are already indices (`datasets.ClassLabel`), else they are matched by `str(value)`

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def null_class_label(self) -> int:
        return len(self.names)

    def encode(self, values) -> torch.Tensor:
        """Column values → `[B]` class indices; `ValueError` for a value the fitted classes do not contain."""
        if self.is_class_label:
            return torch.as_tensor(list(values), dtype=torch.long)
        index = {name: i for i, name in enumerate(self.names)}
        out = []
        for value in values:
            if str(value) not in index:
                raise ValueError(
                    f"Label {value!r} in column {self.column!r} is not one of the classes fitted on the data "
                    f"{self.names[:20]}; fit on data that contains every class (raise `streaming_fit_samples`)."
                )
            out.append(index[str(value)])
        return torch.tensor(out, dtype=torch.long)


def resolve_label_column(column_names: list[str], option) -> str | None:
    """The column to condition on: `auto` → `label` if present, `none` → no conditioning, else the named column."""
    if option in NO_LABELS:
        return None
    if option == "auto":
        return "label" if "label" in column_names else None
    if option not in column_names:
        close = difflib.get_close_matches(str(option), column_names, n=1)
        hint = f" Did you mean `label_column: {close[0]}`?" if close else ""
        raise ValueError(
            f"Label column {option!r} not found; the dataset's columns are {column_names}.{hint} "
            "Use `label_column: none` to train unconditionally."
        )
    return option


def fit_labels(dataset, config) -> ImageLabels | None:
    """The [`ImageLabels`] of `dataset` under the options `label_column` / `class_dropout_prob`, or `None`."""
    import datasets

    column = resolve_label_column(list(dataset.column_names), config.modality_options.label_column)
    if column is None:
        return None
    feature = dataset.features[column] if dataset.features else None
    if isinstance(feature, datasets.ClassLabel):
        names, is_class_label = list(feature.names), True
    else:
        values = sorted({str(v) for v in dataset[column]}, key=lambda v: (len(v), v))
        names, is_class_label = values, False
    if len(names) < 2:
        raise ValueError(
            f"Label column {column!r} has {len(names)} class(es) {names}; class conditioning needs at least 2. Set "
            "`label_column: none` to train unconditionally."
        )
    dropout = float(config.modality_options.class_dropout_prob)
    return ImageLabels(column=column, names=names, dropout=dropout, is_class_label=is_class_label)
