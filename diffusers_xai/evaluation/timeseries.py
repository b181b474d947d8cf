"""Time series: TimeGAN's discriminative and predictive scores, autocorrelation distance and an embedding FID."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .features import feature_space_name
from .fid import fid_sample_warnings, frechet_distance, kernel_distance
from .report import EvaluationReport

__all__ = [
    "WindowStatsEncoder",
    "autocorrelation",
    "autocorrelation_distance",
    "discriminative_score",
    "evaluate_timeseries",
    "predictive_score",
]

logger = logging.getLogger(__name__)


def _windows(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a numpy array or torch.Tensor [N, T, D], got {type(x).__name__}.")
    x = x.detach().cpu()
    if x.ndim == 2:
        x = x.unsqueeze(-1)
    if x.ndim != 3:
        raise ValueError(f"`{name}` must be windows of shape [N, T, D] (or [N, T]), got {tuple(x.shape)}.")
    if not x.is_floating_point():
        x = x.double()
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1)
        raise ValueError(
            f"`{name}` contains NaN or inf in {int(bad.sum())} of {len(x)} windows (first at index "
            f"{int(bad.nonzero()[0])}); fix or drop them."
        )
    if len(x) < 2 or x.shape[1] < 3:
        raise ValueError(f"`{name}` needs at least 2 windows of length >= 3, got shape {tuple(x.shape)}.")
    return x.float()


def _check_pair(real: torch.Tensor, synth: torch.Tensor) -> None:
    if real.shape[1:] != synth.shape[1:]:
        raise ValueError(
            f"Real windows are {tuple(real.shape[1:])} (T, D) but synthetic windows are {tuple(synth.shape[1:])}; "
            "generate windows of the training length and channel count."
        )


def _window_pair(real, synthetic) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets as `[N, T, D]` float windows, checked to share `T` and `D`."""
    real, synth = _windows(real, "real"), _windows(synthetic, "synthetic")
    _check_pair(real, synth)
    return real, synth


def _minmax(real: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """
    TimeGAN's scale convention: its predictor ends in a sigmoid and its scores are MAEs on data in [0, 1]. Data
    already in [0, 1] (TimeGAN's sines) are left as they are, so the published numbers are comparable; anything else
    is min-max scaled per channel with the real data's range (TimeGAN's `MinMaxScaler` for stocks/energy).
    """
    if float(real.min()) >= 0 and float(real.max()) <= 1:
        return [real, *others]
    lo = real.amin(dim=(0, 1), keepdim=True)
    span = (real.amax(dim=(0, 1), keepdim=True) - lo).clamp_min(1e-7)
    return [(x - lo) / span for x in (real, *others)]


def _split(n: int, generator: torch.Generator, train_fraction: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    cut = int(n * train_fraction)
    return perm[:cut], perm[cut:]


class _GRUHead(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, per_step: bool):
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, 1)
        self.per_step = per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, last = self.gru(x)
        return self.out(h) if self.per_step else self.out(last[-1])


def _fit_gru(input_dim, hidden_dim, per_step, seed, learning_rate, iterations, batch_loss, desc, progress) -> _GRUHead:
    """A seeded [`_GRUHead`] trained with Adam for `iterations` steps on `batch_loss(model)` (TimeGAN's post-hoc
    models); the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _GRUHead(input_dim, hidden_dim, per_step=per_step)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    for _ in tqdm(range(iterations), desc=desc, disable=not progress, leave=False):
        loss = batch_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def discriminative_score(
    real,
    synthetic,
    iterations: int = 2000,
    batch_size: int = 128,
    hidden_dim: int | None = None,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> float:
    r"""
    TimeGAN's discriminative score (Yoon et al. 2019, https://papers.nips.cc/paper/8789): a post-hoc one-layer GRU
    classifier (hidden size D/2, logit from the last hidden state, Adam at `learning_rate` (TimeGAN: TensorFlow's
    default 1e-3), `iterations` steps of `batch_size` real + `batch_size` synthetic windows) trained
    on 80% of the real and synthetic windows, $|\text{accuracy} - 0.5|$ on the other 20%. 0 is best. Real data
    outside [0, 1] are min-max scaled per channel (both sets, with the real range) first, as TimeGAN does.
    """
    real, synth = _window_pair(real, synthetic)
    real, synth = _minmax(real, synth)
    g = torch.Generator().manual_seed(seed)
    r_tr, r_te = _split(len(real), g)
    s_tr, s_te = _split(len(synth), g)
    x_train = torch.cat([real[r_tr], synth[s_tr]])
    y_train = torch.cat([torch.ones(len(r_tr)), torch.zeros(len(s_tr))])
    x_test = torch.cat([real[r_te], synth[s_te]])
    y_test = torch.cat([torch.ones(len(r_te)), torch.zeros(len(s_te))])
    loss_fn = nn.BCEWithLogitsLoss()

    def batch_loss(model: nn.Module) -> torch.Tensor:
        # TimeGAN draws each batch from each set separately: batch_size real and batch_size synthetic
        rb = torch.randperm(len(r_tr), generator=g)[:batch_size]
        sb = len(r_tr) + torch.randperm(len(s_tr), generator=g)[:batch_size]
        idx = torch.cat([rb, sb])
        return loss_fn(model(x_train[idx]).squeeze(-1), y_train[idx])

    hidden = hidden_dim or max(1, real.shape[2] // 2)
    desc = "discriminative score"
    model = _fit_gru(real.shape[2], hidden, False, seed, learning_rate, iterations, batch_loss, desc, progress)
    with torch.no_grad():
        accuracy = float(((model(x_test).squeeze(-1) > 0).float() == y_test).float().mean())
    return abs(accuracy - 0.5)


def _predictive_xy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # TimeGAN: channels 0..D-2 at steps 0..T-2 predict channel D-1 at steps 1..T-1. A univariate series predicts
    # itself one step ahead.
    if x.shape[2] == 1:
        return x[:, :-1, :], x[:, 1:, :]
    return x[:, :-1, :-1], x[:, 1:, -1:]


def _train_predictor(x, iterations, batch_size, hidden_dim, learning_rate, seed, progress, desc) -> nn.Module:
    inputs, targets = _predictive_xy(x)
    g = torch.Generator().manual_seed(seed)

    def batch_loss(model: nn.Module) -> torch.Tensor:
        idx = torch.randperm(len(x), generator=g)[:batch_size]
        return (torch.sigmoid(model(inputs[idx])) - targets[idx]).abs().mean()

    hidden = hidden_dim or max(1, x.shape[2] // 2)
    return _fit_gru(inputs.shape[2], hidden, True, seed, learning_rate, iterations, batch_loss, desc, progress)


@torch.no_grad()
def _mae(model: nn.Module, x: torch.Tensor) -> float:
    inputs, targets = _predictive_xy(x)
    # mean over windows of the per-window MAE (TimeGAN's definition; equal-length windows make it the global mean)
    return float((torch.sigmoid(model(inputs)) - targets).abs().mean())


def predictive_score(
    real,
    synthetic,
    iterations: int = 5000,
    batch_size: int = 128,
    hidden_dim: int | None = None,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[float, float]:
    r"""
    TimeGAN's predictive score: a one-layer GRU (hidden size D/2, sigmoid output per step, L1 loss, Adam at 1e-3,
    `iterations` steps) trained on the synthetic windows to predict the last channel one step ahead from the other
    channels (a univariate series predicts itself), then its MAE on all real windows (train on synthetic, test on
    real). The same model trained on the real windows gives the train-on-real reference. Lower is better; real data
    outside [0, 1] are min-max scaled per channel with the real range first (TimeGAN's sines, in [0, 1], are not).

    Returns:
        `(tstr_mae, trtr_mae)`; with `synthetic` equal to `real` the two are identical.
    """
    real, synth = _window_pair(real, synthetic)
    real, synth = _minmax(real, synth)
    kw = {
        "iterations": iterations,
        "batch_size": batch_size,
        "hidden_dim": hidden_dim,
        "learning_rate": learning_rate,
        "seed": seed,
        "progress": progress,
    }
    tstr = _mae(_train_predictor(synth, desc="predictive score (synthetic)", **kw), real)
    trtr = _mae(_train_predictor(real, desc="predictive score (real)", **kw), real)
    return tstr, trtr


def autocorrelation(x, max_lag: int) -> torch.Tensor:
    r"""
    Per-window, per-channel sample autocorrelation $\hat\rho(h) = \hat\gamma(h) / \hat\gamma(0)$ with
    $\hat\gamma(h) = \frac1T \sum_{t=1}^{T-h} (x_t - \bar x)(x_{t+h} - \bar x)$ (statsmodels' `acf(adjusted=False)`)
    for lags 1..`max_lag`: `[N, max_lag, D]`. Vectorised because statsmodels' `acf` takes one 1-D series per call
    (N×D Python calls); equality with it is tested. Constant windows give NaN.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim == 2:
        x = x.unsqueeze(-1)
    t = x.shape[1]
    if not 1 <= max_lag < t:
        raise ValueError(f"`max_lag` must be between 1 and T - 1 = {t - 1}, got {max_lag}.")
    xc = x - x.mean(1, keepdim=True)
    gamma0 = xc.square().sum(1)
    lags = [(xc[:, :-h] * xc[:, h:]).sum(1) / gamma0 for h in range(1, max_lag + 1)]
    return torch.stack(lags, 1)


def autocorrelation_distance(real, synthetic, max_lag: int | None = None) -> float:
    """
    Mean absolute difference between the mean autocorrelation functions (lags 1..`max_lag`, default
    `min(T - 1, 10)`) of real and synthetic windows, averaged over lags and channels. 0 is best.
    """
    real, synth = _window_pair(real, synthetic)
    max_lag = max_lag or min(real.shape[1] - 1, 10)
    acf_r = autocorrelation(real, max_lag).nanmean(0)
    acf_s = autocorrelation(synth, max_lag).nanmean(0)
    return float((acf_r - acf_s).abs().nanmean())


class WindowStatsEncoder(nn.Module):
    r"""
    The documented, training-free embedding for window FID: per channel the mean, standard deviation, minimum,
    maximum, mean absolute first difference, autocorrelation at lags 1..`max_lag`, and the share of spectral power
    in `num_bands` equal frequency bands; plus the upper triangle of the channel correlation matrix. Dimension
    $D (5 + L + B) + D(D-1)/2$. Deterministic and the same for every dataset, so numbers are reproducible across
    runs and machines, unlike an encoder trained per dataset (Context-FID's TS2Vec). Apply it to windows min-max
    in the [0, 1] scale [`evaluate_timeseries`] uses (TimeGAN's convention). Input `[N, T, D]`, output `[N, F]`.
    """

    feature_space_name = "window-statistics"

    def __init__(self, max_lag: int = 10, num_bands: int = 8):
        super().__init__()
        self.max_lag = max_lag
        self.num_bands = num_bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        n, t, d = x.shape
        lag = min(self.max_lag, t - 1)
        std = x.std(1, unbiased=False)
        acf = autocorrelation(x, lag).nan_to_num(0.0)  # constant channel: no autocorrelation
        power = torch.fft.rfft(x - x.mean(1, keepdim=True), dim=1).abs().square()[:, 1:]  # drop DC
        bands = torch.stack([b.sum(1) for b in power.tensor_split(self.num_bands, dim=1)], 1)
        bands = bands / bands.sum(1, keepdim=True).clamp_min(1e-12)
        parts = [x.mean(1), std, x.amin(1), x.amax(1), x.diff(dim=1).abs().mean(1), acf.flatten(1), bands.flatten(1)]
        if d > 1:
            xs = (x - x.mean(1, keepdim=True)) / std.unsqueeze(1).clamp_min(1e-12)
            corr = xs.transpose(1, 2) @ xs / t
            iu = torch.triu_indices(d, d, 1)
            parts.append(corr[:, iu[0], iu[1]])
        return torch.cat(parts, 1)


def evaluate_timeseries(
    real,
    synthetic,
    *,
    encoder: nn.Module | None = None,
    discriminative_iterations: int = 2000,
    predictive_iterations: int = 5000,
    batch_size: int = 128,
    max_lag: int | None = None,
    output_dir: str | os.PathLike | None = None,
    dataset_name: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> EvaluationReport:
    r"""
    Compare synthetic windows `[M, T, D]` with real windows `[N, T, D]` (numpy or torch; `[N, T]` for univariate):
    TimeGAN's discriminative score and predictive score (TSTR, with the train-on-real reference), the
    autocorrelation distance, and FID and KID on the embeddings of `encoder` (default [`WindowStatsEncoder`]).

    The TimeGAN defaults (2000 / 5000 iterations of batch 128) take tens of seconds on a CPU; lower them for quick
    checks, and report the numbers with the budget used.

    Returns:
        [`EvaluationReport`] with `modality="timeseries"`.
    """
    real_w, synth_w = _window_pair(real, synthetic)
    encoder = encoder if encoder is not None else WindowStatsEncoder()
    space = feature_space_name(encoder)
    report = EvaluationReport.for_sets("timeseries", real_w, synth_w, dataset_name, space)
    report.details["window_shape"] = list(real_w.shape[1:])
    report.add(
        f"Discriminative score (post-hoc GRU, {discriminative_iterations} it)",
        discriminative_score(real_w, synth_w, discriminative_iterations, batch_size, seed=seed, progress=progress),
        key="discriminative_score",
        higher_is_better=False,
        description="|accuracy - 0.5| of a GRU telling real from synthetic windows (TimeGAN).",
    )
    tstr, trtr = predictive_score(real_w, synth_w, predictive_iterations, batch_size, seed=seed, progress=progress)
    report.add(
        f"Predictive score TSTR MAE (GRU, {predictive_iterations} it)",
        tstr,
        key="predictive_score",
        higher_is_better=False,
    )
    report.add(
        f"Predictive score TRTR MAE (GRU, {predictive_iterations} it)",
        trtr,
        key="predictive_score_real",
        higher_is_better=False,
    )
    report.add(
        "Autocorrelation distance",
        autocorrelation_distance(real_w, synth_w, max_lag),
        key="acf_distance",
        higher_is_better=False,
    )
    scaled_real, scaled_synth = _minmax(real_w, synth_w)
    with torch.no_grad():
        f_real, f_synth = encoder(scaled_real).double(), encoder(scaled_synth).double()
    report.warnings += fid_sample_warnings(len(real_w), len(synth_w), f_real.shape[1], space)
    report.add(f"FID ({space} embedding)", frechet_distance(f_real, f_synth), key="fid", higher_is_better=False)
    kid_mean, kid_std = kernel_distance(f_real, f_synth, seed=seed)
    report.add(f"KID ({space} embedding)", kid_mean, std=kid_std, key="kid", higher_is_better=False)
    if output_dir is not None:
        from ..viz.evaluation import plot_metric_bars

        report.artifacts["scores"] = plot_metric_bars(
            {m.name: m.value for m in report.metrics},
            os.path.join(output_dir, "timeseries_scores.png"),
            title="Synthetic time-series evaluation",
        )
    return report
