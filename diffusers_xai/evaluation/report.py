"""Typed evaluation results that serialise to JSON and turn into Hub `EvalResult` pairs."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..utils.io import atomic_write

__all__ = ["EvaluationReport", "MetricResult"]


@dataclass
class MetricResult:
    r"""
    One number of an [`EvaluationReport`].

    Args:
        name (`str`): the honest display name, naming the feature space when there is one
            (`"FID (digits-CNN features)"`, never `"FID"` alone).
        value (`float`): the value (`nan` when it could not be computed; the reason is in the report's `warnings`).
        std (`float`, *optional*): spread over subsets or repeats, when the metric has one (KID, IS).
        higher_is_better (`bool`, *optional*): direction; `None` when neither (e.g. a diversity ratio, best at 1).
        key (`str`, *optional*): a short machine key (`"fid"`, `"prdc_precision"`), stable across feature spaces.
        description (`str`, *optional*): one line on what the number means and its reference.
    """

    name: str
    value: float
    std: float | None = None
    higher_is_better: bool | None = None
    key: str = ""
    description: str = ""

    def __post_init__(self):
        self.value = float(self.value)
        if self.std is not None:
            self.std = float(self.std)


def _json_safe(obj: Any) -> Any:
    # JSON has no NaN/inf: write them as null (and read null back as nan for `value`).
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return _json_safe(obj.item())
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    return obj


@dataclass
class EvaluationReport:
    r"""
    The result of [`evaluate_images`], [`evaluate_table`] or [`evaluate_timeseries`].

    Args:
        modality (`str`): the [`Modality`] name (`"image"`, `"tabular"`, `"timeseries"`).
        metrics (`list[MetricResult]`): every number, in a fixed order.
        num_real (`int`) / num_generated (`int`): sample counts the metrics were computed on.
        feature_space (`str`, *optional*): the embedding used by the feature-space metrics (`"digits-CNN"`).
        dataset_name (`str`, *optional*): what the real data was (`"sklearn digits 16x16"`), for the model card.
        warnings (`list[str]`): everything the user should know before trusting a number (small-N bias, ...).
        details (`dict`): JSON-able extras (per-class histograms, flagged sample indices, sdmetrics breakdowns).
        artifacts (`dict[str, str]`): PNGs written, by name.

    Example:

    ```py
    >>> report = evaluate_images(real, fake)
    >>> report["fid"].value, report.to_eval_results()[:2]
    >>> report.save("report.json"); EvaluationReport.load("report.json") == report
    ```
    """

    modality: str
    metrics: list[MetricResult] = field(default_factory=list)
    num_real: int = 0
    num_generated: int = 0
    feature_space: str | None = None
    dataset_name: str | None = None
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        from ..modalities.registry import check_modality_name

        check_modality_name(self.modality)

    @classmethod
    def for_sets(
        cls, modality: str, real, generated, dataset_name: str | None = None, feature_space: str | None = None
    ) -> EvaluationReport:
        """An empty report on `real` against `generated` (anything with a length: their counts are recorded)."""
        return cls(
            modality=modality,
            num_real=len(real),
            num_generated=len(generated),
            feature_space=feature_space,
            dataset_name=dataset_name,
        )

    def __getitem__(self, key: str) -> MetricResult:
        """Look a metric up by `key` (`"fid"`) or by display name (`"FID (digits-CNN features)"`)."""
        for metric in self.metrics:
            if key in (metric.key, metric.name):
                return metric
        raise KeyError(f"No metric {key!r} in this report; available keys: {[m.key or m.name for m in self.metrics]}.")

    def __contains__(self, key: str) -> bool:
        return any(key in (m.key, m.name) for m in self.metrics)

    def add(self, name: str, value: float, **kwargs) -> MetricResult:
        metric = MetricResult(name=name, value=value, **kwargs)
        self.metrics.append(metric)
        return metric

    def to_eval_results(self, include_nan: bool = False) -> list[tuple[str, float]]:
        """
        `(metric_name, value)` pairs with honest names, in report order, ready to become model-index
        `huggingface_hub.EvalResult(metric_name=name, metric_value=value, ...)` entries. Metrics that could not be
        computed (nan) are left out unless `include_nan=True`.
        """
        return [(m.name, m.value) for m in self.metrics if include_nan or math.isfinite(m.value)]

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(self, path: str | os.PathLike) -> str:
        """Write the report as JSON atomically (temp file + `os.replace`); returns the path."""
        path = os.fspath(path)
        atomic_write(path, self.to_json())
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        data = dict(data)
        metrics = []
        for m in data.pop("metrics", []):
            m = dict(m)
            m["value"] = float("nan") if m.get("value") is None else m["value"]
            metrics.append(MetricResult(**m))
        return cls(metrics=metrics, **data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationReport:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def summary(self) -> str:
        """A plain-text table of the metrics, then the warnings."""
        width = max((len(m.name) for m in self.metrics), default=10)
        lines = [f"{self.modality} evaluation: {self.num_generated} generated vs {self.num_real} real"]
        for m in self.metrics:
            std = f" ± {m.std:.4g}" if m.std is not None and math.isfinite(m.std) else ""
            lines.append(f"  {m.name:<{width}}  {m.value:.4g}{std}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
