"""α-precision and β-recall of a synthetic table (Alaa et al., 2022), as TabSyn and TabDiff report them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .tabular_schema import as_number, feature_columns, infer_metadata

__all__ = ["AlphaPrecisionResult", "alpha_precision_beta_recall", "embed_rows"]


@dataclass
class AlphaPrecisionResult:
    """`alpha_precision` (Δ-precision_α: synthetic rows fall in the real support at the right density),
    `beta_recall` (Δ-coverage_β: the real rows are covered by synthetic ones) and `authenticity` (share of synthetic
    rows farther from their nearest real row than that real row is from its own nearest real neighbour)."""

    alpha_precision: float
    beta_recall: float
    authenticity: float

    def to_dict(self) -> dict:
        return asdict(self)


def embed_rows(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict) -> tuple[np.ndarray, np.ndarray]:
    """
    TabSyn's embedding for α-precision (`eval/eval_quality.py`): numerical columns divided by their real range,
    categoricals one-hot over the real levels. Missing values (which TabSyn's tables have none of) become a 0/1
    indicator column plus the real median (numerical) or a level of their own (categorical).
    """
    categorical, numerical = feature_columns(metadata, None)
    real_parts, synth_parts = [], []
    for c in numerical:
        fmt = metadata["columns"][c].get("datetime_format")
        r, s = as_number(real[c], fmt).to_numpy(), as_number(synthetic[c], fmt).to_numpy()
        span = np.nanmax(r) - np.nanmin(r) or 1.0
        median = np.nanmedian(r)
        real_parts.append(np.nan_to_num(r, nan=median)[:, None] / span)
        synth_parts.append(np.nan_to_num(s, nan=median)[:, None] / span)
        if np.isnan(r).any() or np.isnan(s).any():
            real_parts.append(np.isnan(r)[:, None].astype(float))
            synth_parts.append(np.isnan(s)[:, None].astype(float))
    for c in categorical:
        r = real[c].astype(object).where(real[c].notna(), "<NaN>").astype(str)
        s = synthetic[c].astype(object).where(synthetic[c].notna(), "<NaN>").astype(str)
        levels = pd.Index(sorted(r.unique()))
        real_parts.append(np.eye(len(levels))[levels.get_indexer(r)])
        idx = levels.get_indexer(s)  # levels the real data lacks: all zeros
        synth_parts.append(np.where(idx[:, None] >= 0, np.eye(len(levels))[np.maximum(idx, 0)], 0.0))
    return np.concatenate(real_parts, axis=1), np.concatenate(synth_parts, axis=1)


def alpha_precision_beta_recall(
    real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict | None = None, n_steps: int = 30
) -> AlphaPrecisionResult:
    r"""
    The "naive" α-precision, β-recall and authenticity of [Alaa et al., 2022](https://arxiv.org/abs/2102.08921),
    computed as synthcity's `AlphaPrecision.metrics` does (the `*_naive` keys TabSyn reports as α-Precision and
    β-Recall): balls around the real mean at the real distance quantiles α, and the curves' areas to the diagonal,
    $1 - \sum_\alpha |\alpha - P_\alpha| / \sum_\alpha \alpha$. Rows are embedded by [`embed_rows`].

    Re-implemented (about 30 lines of numpy/scikit-learn) because synthcity pins its own torch and pulls in dozens of
    packages; the formulas and the 30-step α grid are synthcity's.
    """
    from sklearn.neighbors import NearestNeighbors

    metadata = metadata or infer_metadata(real)
    x, x_syn = embed_rows(real, synthetic, metadata)
    alphas = np.linspace(0, 1, n_steps)
    center = x.mean(axis=0)
    radii = np.quantile(np.linalg.norm(x - center, axis=1), alphas)
    synth_center = x_syn.mean(axis=0)
    synth_to_center = np.linalg.norm(x_syn - center, axis=1)
    real_to_real = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)[0][:, 1]
    real_to_synth, closest = NearestNeighbors(n_neighbors=1).fit(x_syn).kneighbors(x)
    real_to_synth, closest = real_to_synth[:, 0], closest[:, 0]
    closest_d = np.linalg.norm(x_syn[closest] - synth_center, axis=1)
    closest_radii = np.quantile(closest_d, alphas)
    precision = np.array([np.mean(synth_to_center <= r) for r in radii])
    coverage = np.array([np.mean((real_to_synth <= real_to_real) & (closest_d <= r)) for r in closest_radii])
    authenticity = float(np.mean(real_to_real[closest] < real_to_synth))
    return AlphaPrecisionResult(
        alpha_precision=float(1 - np.abs(alphas - precision).sum() / alphas.sum()),
        beta_recall=float(1 - np.abs(alphas - coverage).sum() / alphas.sum()),
        authenticity=authenticity,
    )
