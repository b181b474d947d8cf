"""
CPU cost of every evaluation metric, in seconds per 1,000 samples, with the reference ("stock") implementations
timed in the same run for the hand-written parts (chunked PRDC and nearest neighbours).

    python bench/eval_cost.py [--num_samples 1000] [--threads 1] [--gru_iterations 200]

Quadratic metrics (PRDC, nearest neighbours, diversity) are timed at N = M = num_samples, so their per-1,000 cost
grows with N. The GRU scores cost per training iteration, not per sample: they are timed for `--gru_iterations`
and extrapolated to TimeGAN's budgets (2,000 discriminative, 2 x 5,000 predictive iterations).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import torch
from _common import bench_parser


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def reference_prdc(real, fake, k):
    # clovaai/generative-evaluation-prdc's algorithm: three full distance matrices via sklearn
    from sklearn.metrics import pairwise_distances

    real_radii = np.partition(pairwise_distances(real), k, axis=1)[:, k]
    fake_radii = np.partition(pairwise_distances(fake), k, axis=1)[:, k]
    d = pairwise_distances(real, fake)
    return (
        (d < real_radii[:, None]).any(0).mean(),
        (d < fake_radii[None]).any(1).mean(),
        (d < real_radii[:, None]).sum(0).mean() / k,
        (d.min(1) < real_radii).mean(),
    )


def main(args) -> None:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    from sklearn.datasets import load_breast_cancer
    from sklearn.neighbors import NearestNeighbors

    from diffusers_xai.evaluation import (
        DigitsCNN,
        autocorrelation_distance,
        compute_prdc,
        detection_auc,
        discriminative_score,
        evaluate_table,
        extract_features,
        frechet_distance,
        inception_score,
        kernel_distance,
        mean_pairwise_distance,
        memorization_test,
        predictive_score,
        train_synthetic_test_real,
    )
    from diffusers_xai.evaluation.neighbors import DEFAULT_MAX_BYTES
    from diffusers_xai.evaluation.timeseries import WindowStatsEncoder
    from diffusers_xai.modalities.image.data import load_digits_tensors

    n = args.num_samples
    per_k = 1000 / n
    rows = []

    def add(group, metric, seconds, note="", reference=None):
        rows.append(
            {
                "group": group,
                "metric": metric,
                "s / 1k samples": seconds * per_k,
                "reference s / 1k": None if reference is None else reference * per_k,
                "speed-up vs reference": None if reference is None else reference / seconds,
                "note": note,
            }
        )

    # ---- images (digits, 16x16, 64-D digits-CNN features) ----
    x, _ = load_digits_tensors(16)
    g = torch.Generator().manual_seed(0)
    real = ((x[torch.randint(len(x), (n,), generator=g)] + 1) / 2).contiguous()
    fake = (real + 0.1 * torch.randn(real.shape, generator=g)).clamp(0, 1)
    model = DigitsCNN.from_shipped()
    t, fs = timed(extract_features, fake, model, progress=False)
    add("images", "digits-CNN features + logits", t)
    fr = extract_features(real, model, progress=False)
    t, _ = timed(frechet_distance, fr.features, fs.features)
    add("images", "FID (from features)", t)
    t, _ = timed(kernel_distance, fr.features, fs.features)
    add("images", "KID (N <= 1000: one subset = both whole sets)", t)
    f2 = torch.cat([fr.features, fs.features])  # 2N samples: 100 random subsets of 1000 are drawn
    t, _ = timed(kernel_distance, f2, f2.flip(0))
    add("images", f"KID at N={2 * n} (100 random subsets of 1000), per 1k of the 2N", t / 2)
    t, _ = timed(inception_score, fs.logits)
    add("images", "Inception Score (10 splits)", t)
    t, _ = timed(compute_prdc, fr.features, fs.features, 5)
    t_ref, _ = timed(reference_prdc, fr.features.numpy(), fs.features.numpy(), 5)
    add("images", "PRDC k=5 (64-D)", t, "reference: clovaai algorithm, 3 full sklearn matrices", t_ref)
    t, _ = timed(mean_pairwise_distance, fs.features)
    add("images", "mean pairwise distance", t)
    train = ((x + 1) / 2).contiguous()
    t, _ = timed(memorization_test, fake, train)
    t_ref, _ = timed(
        lambda: (
            NearestNeighbors(n_neighbors=50, algorithm="brute")
            .fit(train.flatten(1).numpy())
            .kneighbors(fake.flatten(1).numpy())
        )
    )
    add(
        "images",
        f"memorisation, pixel space (vs {len(train)} train, k=50)",
        t,
        "reference: sklearn NearestNeighbors(brute)",
        t_ref,
    )

    # ---- PRDC at the published scale: memory, not speed ----
    big = 10000
    full_matrix_mb = big * big * 8 / 2**20
    print(
        f"PRDC at N=M={big}: reference holds 3 float64 matrices of {full_matrix_mb:.0f} MiB each; chunked blocks "
        f"are capped at {DEFAULT_MAX_BYTES / 2**20:.0f} MiB (DEFAULT_MAX_BYTES)."
    )

    # ---- tables (breast cancer resampled to N rows; synthetic = noisy copy) ----
    df = load_breast_cancer(as_frame=True).frame
    real_t = df.sample(n, replace=True, random_state=0).reset_index(drop=True)
    test_t = df.sample(n, replace=True, random_state=1).reset_index(drop=True)
    synth_t = real_t.copy()
    cols = [c for c in df.columns if c != "target"]
    synth_t[cols] = synth_t[cols] + np.random.default_rng(0).normal(0, 0.3, (n, len(cols))) * df[cols].std().to_numpy()
    t, _ = timed(train_synthetic_test_real, real_t, synth_t, test_t, "target")
    add("table", "TSTR + TRTR (2 HistGradientBoosting fits, 31 columns)", t)
    t, _ = timed(detection_auc, real_t, synth_t)
    add("table", "detection AUC (5-fold)", t)
    from sdmetrics.reports.single_table import QualityReport
    from sdmetrics.single_table.privacy.dcr_utils import calculate_dcr

    from diffusers_xai.evaluation import distance_to_closest_record, infer_metadata

    md = infer_metadata(real_t)
    t, _ = timed(lambda: QualityReport().generate(real_t, synth_t, md, verbose=False))
    add("table", "SDMetrics QualityReport (31 columns, 465 pairs)", t)
    t, _ = timed(distance_to_closest_record, synth_t, real_t, md)
    t_ref, _ = timed(calculate_dcr, dataset=synth_t, reference_dataset=real_t, metadata=md)
    add("table", "DCR synthetic->real (same definition)", t, "reference: sdmetrics calculate_dcr", t_ref)
    t, _ = timed(evaluate_table, real_t, synth_t, target="target", real_test=test_t, sdmetrics_privacy=False)
    add("table", "evaluate_table, sdmetrics_privacy=False", t)
    t, _ = timed(evaluate_table, real_t, synth_t, target="target", real_test=test_t)
    add("table", "evaluate_table (default: + SDMetrics DCR Baseline/Overfitting protection)", t)

    # ---- time series (sines, 24 x 5) ----
    rng = np.random.default_rng(0)
    f, p = rng.uniform(0, 0.1, (2, n, 1, 5))
    r_ts = ((np.sin(f * np.arange(24)[None, :, None] + p) + 1) / 2).astype(np.float32)
    s_ts = (r_ts + rng.normal(0, 0.05, r_ts.shape)).astype(np.float32)
    t, _ = timed(autocorrelation_distance, r_ts, s_ts)
    add("timeseries", "autocorrelation distance", t)
    enc = WindowStatsEncoder()
    t, _ = timed(lambda: frechet_distance(enc(torch.from_numpy(r_ts)), enc(torch.from_numpy(s_ts))))
    add("timeseries", "FID (window-statistics embedding)", t)
    it = args.gru_iterations
    t, _ = timed(discriminative_score, r_ts, s_ts, iterations=it, progress=False)
    print(
        f"discriminative score: {t / it * 1000:.2f} s per 1,000 iterations -> TimeGAN budget (2,000): "
        f"~{t / it * 2000:.0f} s, independent of N"
    )
    t, _ = timed(predictive_score, r_ts, s_ts, iterations=it, progress=False)
    print(
        f"predictive score (2 models): {t / it * 1000:.2f} s per 1,000 iterations -> TimeGAN budget (5,000 each): "
        f"~{t / it * 5000:.0f} s, independent of N"
    )

    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 80)
    print(f"\nN = {n}, torch threads = {args.threads}, torch {torch.__version__}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--gru_iterations", type=int, default=200)
    main(parser.parse_args())
