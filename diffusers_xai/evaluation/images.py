"""`evaluate_images`: every image metric of the package in one call, as an [`EvaluationReport`]."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from .diversity import class_coverage, mean_pairwise_distance
from .features import extract_features, feature_space_name, resolve_feature_extractor
from .fid import fid_sample_warnings, frechet_distance, inception_score, kernel_distance
from .inputs import check_image_pair, to_unit_images
from .memorization import memorization_test
from .prdc import compute_prdc
from .report import EvaluationReport

__all__ = ["add_image_distances", "evaluate_images"]

logger = logging.getLogger(__name__)


def evaluate_images(
    real,
    fake,
    *,
    training=None,
    feature: str | int | nn.Module = "digits-cnn",
    value_range: tuple[float, float] | None = None,
    nearest_k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    memorization_k: int = 50,
    memorization_alpha: float = 0.5,
    memorization_threshold: float = 1 / 3,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    output_dir: str | os.PathLike | None = None,
    dataset_name: str | None = None,
    progress: bool = True,
    seed: int = 0,
    samples: str | None = None,
    extra_generated: Mapping[str, tuple[str, Any]] | None = None,
) -> EvaluationReport:
    r"""
    Compare generated images with real ones: FID and KID, Inception Score, precision/recall/density/coverage,
    diversity, per-class coverage and memorisation, all in one feature space whose name is part of every metric name.

    Args:
        real, fake: images as `torch.Tensor` `[N, C, H, W]`, numpy `[N, H, W, C]` or lists of PIL images, each
            uint8, [0, 1] or [-1, 1] (detected per set, see [`to_unit_images`]; force with `value_range`). Both sets
            must have the same channels and size.
        training (*optional*): the training images for the memorisation test; defaults to `real`.
        feature (`str`, `int` or `nn.Module`, *optional*, defaults to `"digits-cnn"`): the feature space. The default
            is the shipped [`DigitsCNN`] (offline; meaningful for digit-like 1-channel images only).
            `"inception"`/2048 uses torchmetrics' FID InceptionV3 and needs `torch-fidelity`. Any `nn.Module` taking
            `[N, C, H, W]` in [0, 1] works; a `logits` method adds the Inception Score and class coverage.
        nearest_k (`int`, *optional*, defaults to 5): k of the PRDC k-NN balls.
        kid_subsets, kid_subset_size: KID's subsets (size capped at the smaller set).
        is_splits (`int`, *optional*, defaults to 10): Inception Score splits.
        memorization_k, memorization_alpha, memorization_threshold: the Carlini et al. ratio test, see
            [`memorization_test`].
        batch_size (`int`): feature-extraction batch size. device: where the feature extractor runs.
        output_dir (`str`, *optional*): when set, PNGs are written there (nearest-neighbour grid, PRDC bars, class
            histogram) and listed in `report.artifacts`.
        dataset_name (`str`, *optional*): what `real` is, recorded in the report for model cards.
        progress (`bool`): tqdm bars for the long loops. seed (`int`): seeds KID and IS subset draws.
        samples (`str`, *optional*): what `fake` is when that is not plain unconditional sampling (e.g.
            `"class-conditional samples, 10 classes in turn, guidance 1"`), added to the names of the metrics of
            `fake` alone and with `real` (FID, KID, IS, PRDC, diversity, class coverage): a card says what it scored.
        extra_generated (`dict`, *optional*): more generated sets scored by FID/KID against the same real features
            (extracted once), `{key_suffix: (samples, images)}`, as [`add_image_distances`] names them: e.g.
            `{"_null_class": ("unconditional null-class samples", null_images)}`.

    Returns:
        [`EvaluationReport`] with `modality="image"`.

    Example:

    ```py
    >>> from diffusers_xai.modalities.image.data import load_digits_tensors
    >>> from diffusers_xai.evaluation import evaluate_images
    >>> real, _ = load_digits_tensors(16)  # [-1, 1]
    >>> fake = pipe(batch_size=500, output_type="pt").images  # [0, 1]
    >>> report = evaluate_images(real, fake, output_dir="eval")
    >>> print(report.summary())
    ```
    """
    real_x, fake_x, train_x, ranges = _unit_image_sets(real, fake, training, value_range, nearest_k)
    extractor = resolve_feature_extractor(feature)
    space = feature_space_name(extractor)
    report = EvaluationReport.for_sets("image", real_x, fake_x, dataset_name, space)
    report.details["value_ranges"] = ranges
    kw = {"batch_size": batch_size, "device": device, "progress": progress}
    real_f = extract_features(real_x, extractor, desc="features (real)", **kw)
    fake_f = extract_features(fake_x, extractor, desc="features (generated)", **kw)
    train_f = real_f if training is None else extract_features(train_x, extractor, desc="features (training)", **kw)
    of = f", {samples}" if samples else ""
    # 1. distribution distances (FID beside KID, with the small-N caveats)
    _add_distances(report, real_f, fake_f, space, kid_subsets, kid_subset_size, seed, of=of)
    for suffix, (extra_samples, extra) in _checked_extra_sets(extra_generated, value_range, real_x).items():
        extra_f = extract_features(extra, extractor, desc=f"features ({extra_samples})", **kw)
        kid = (kid_subsets, kid_subset_size, seed)
        _add_distances(report, real_f, extra_f, space, *kid, of=f", {extra_samples}", suffix=suffix)
    # 2. Inception Score under the extractor's classifier, with the real data's as the ceiling to compare with
    _add_inception_scores(report, real_f, fake_f, space, is_splits, seed, of=of)
    # 3. fidelity and diversity on k-NN manifolds
    prdc = _add_fidelity_and_diversity(report, real_f, fake_f, space, nearest_k, progress, of=of)
    # 4. memorisation against the training set, in pixel and in feature space
    memorization = (memorization_k, memorization_alpha, memorization_threshold)
    mem_pixel = _add_memorization(report, fake_x, train_x, fake_f, train_f, space, memorization, progress)
    # 5. pictures
    if output_dir is not None:
        _add_plots(report, output_dir, fake_x, train_x, mem_pixel, prdc, space, nearest_k)
    return report


def _unit_image_sets(real, fake, training, value_range, nearest_k: int):
    """`real`, `fake` and the training images (`real` when `None`) in [0, 1], checked to match, and the value ranges
    they were read from (for the report)."""
    real_x, real_range = to_unit_images(real, "real", value_range)
    fake_x, fake_range = to_unit_images(fake, "fake", value_range)
    check_image_pair(real_x, fake_x)
    if training is None:
        train_x = real_x
    else:
        train_x, _ = to_unit_images(training, "training", value_range)
        check_image_pair(train_x, fake_x, "training", "fake")
    if min(len(real_x), len(fake_x)) <= nearest_k:
        raise ValueError(
            f"Need more than nearest_k={nearest_k} images per set, got {len(real_x)} real and {len(fake_x)} generated."
        )
    ranges = {"real": list(real_range), "fake": list(fake_range)}
    if real_range != fake_range:
        ranges["note"] = "real and generated images were rescaled from different ranges"
    return real_x, fake_x, train_x, ranges


def _checked_extra_sets(extra_generated, value_range, real_x) -> dict:
    """`{key_suffix: (samples, images in [0, 1])}` of [`evaluate_images`]'s `extra_generated`, checked."""
    out = {}
    for suffix, (samples, images) in (extra_generated or {}).items():
        _check_extra_names(suffix, samples)
        images, _ = to_unit_images(images, samples, value_range)
        check_image_pair(real_x, images, "real", samples)
        out[suffix] = (samples, images)
    return out


def _check_extra_names(key_suffix: str, samples: str) -> None:
    if not key_suffix or not samples:
        raise ValueError(
            f"add_image_distances needs a key_suffix and a samples description (got {key_suffix!r}, {samples!r}) so "
            "its metrics cannot be mistaken for the report's own FID/KID."
        )


def add_image_distances(
    report: EvaluationReport,
    real,
    fake,
    *,
    samples: str,
    key_suffix: str,
    feature: str | int | nn.Module = "digits-cnn",
    value_range: tuple[float, float] | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = True,
    seed: int = 0,
) -> None:
    """
    Add FID and KID of a second generated set `fake` against `real` to `report` (an [`evaluate_images`] report), as
    `"FID (<space> features, <samples>)"` under the keys `fid<key_suffix>`/`kid<key_suffix>`: e.g. a class-conditional
    model's unconditional (null-class) samples beside its class-conditional ones. Arguments as [`evaluate_images`].
    """
    _check_extra_names(key_suffix, samples)
    real_x, _ = to_unit_images(real, "real", value_range)
    fake_x, _ = to_unit_images(fake, "fake", value_range)
    check_image_pair(real_x, fake_x)
    extractor = resolve_feature_extractor(feature)
    space = feature_space_name(extractor)
    kw = {"batch_size": batch_size, "device": device, "progress": progress}
    real_f = extract_features(real_x, extractor, desc="features (real)", **kw)
    fake_f = extract_features(fake_x, extractor, desc=f"features ({samples})", **kw)
    _add_distances(
        report, real_f, fake_f, space, kid_subsets, kid_subset_size, seed, of=f", {samples}", suffix=key_suffix
    )


def _add_distances(
    report,
    real_f,
    fake_f,
    space: str,
    kid_subsets: int,
    kid_subset_size: int,
    seed: int,
    of: str = "",
    suffix: str = "",
) -> None:
    """FID and KID (with FID's small-sample warnings); `of` extends their names, `suffix` their keys."""
    real_x_len, fake_x_len = len(real_f.features), len(fake_f.features)
    dim = real_f.features.shape[1]
    if not suffix:  # the same warnings for a second set of the same size would only repeat them
        report.warnings += fid_sample_warnings(real_x_len, fake_x_len, dim, space)
    report.add(
        f"FID ({space} features{of})",
        frechet_distance(real_f.features, fake_f.features),
        key=f"fid{suffix}",
        higher_is_better=False,
        description=f"Fréchet distance of Gaussians fitted to {dim}-D {space} features (Heusel et al. 2017).",
    )
    kid_mean, kid_std = kernel_distance(
        real_f.features, fake_f.features, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    report.add(
        f"KID ({space} features{of})",
        kid_mean,
        std=kid_std,
        key=f"kid{suffix}",
        higher_is_better=False,
        description="Unbiased polynomial-kernel MMD² (Bińkowski et al. 2018); slightly negative (−O(1/N)) for a set "
        "against itself.",
    )


def _add_inception_scores(report, real_f, fake_f, space: str, is_splits: int, seed: int, of: str = "") -> None:
    """IS of the generated images and, as the ceiling, of the real ones (when the extractor has logits)."""
    if fake_f.logits is not None:
        if len(fake_f.features) >= is_splits:
            mean, std = inception_score(fake_f.logits, splits=is_splits, seed=seed)
            report.add(f"IS ({space} classifier{of})", mean, std=std, key="is", higher_is_better=True)
        if len(real_f.features) >= is_splits:
            mean, std = inception_score(real_f.logits, splits=is_splits, seed=seed)
            report.add(f"IS of real data ({space} classifier)", mean, std=std, key="is_real", higher_is_better=True)


def _add_fidelity_and_diversity(report, real_f, fake_f, space: str, nearest_k: int, progress: bool, of: str = ""):
    """Precision/recall/density/coverage, pairwise diversity and class coverage; returns the PRDC result."""
    prdc = compute_prdc(real_f.features, fake_f.features, nearest_k=nearest_k, progress=progress)
    for attr, label in (
        ("precision", "Precision"),
        ("recall", "Recall"),
        ("density", "Density"),
        ("coverage", "Coverage"),
    ):
        report.add(
            f"{label} ({space} features, k={nearest_k}{of})",
            getattr(prdc, attr),
            key=f"prdc_{attr}",
            higher_is_better=True,
        )
    fake_div = mean_pairwise_distance(fake_f.features)
    real_div = mean_pairwise_distance(real_f.features)
    report.add(f"Mean pairwise distance ({space} features{of})", fake_div, key="diversity")
    report.add(
        f"Diversity ratio generated/real ({space} features{of})",
        fake_div / real_div if real_div > 0 else float("nan"),
        key="diversity_ratio",
        description="Mean pairwise feature distance of generated over real samples; <1 suggests mode collapse.",
    )
    if fake_f.logits is not None:
        cov = class_coverage(fake_f.logits, real_f.logits)
        report.add(
            f"Classes covered ({space} classifier{of})",
            cov.classes_covered,
            key="classes_covered",
            higher_is_better=True,
        )
        report.add(
            f"Class-histogram TV distance ({space} classifier{of})",
            cov.total_variation,
            key="class_tv",
            higher_is_better=False,
        )
        report.details["class_coverage"] = cov.to_dict()
    return prdc


def _add_memorization(report, fake_x, train_x, fake_f, train_f, space: str, memorization, progress: bool):
    """The Carlini et al. test in pixel and feature space; returns the pixel-space result (for the plot)."""
    memorization_k, memorization_alpha, memorization_threshold = memorization
    mem_pixel = memorization_test(
        fake_x, train_x, memorization_k, memorization_alpha, memorization_threshold, space="pixel", progress=progress
    )
    mem_feature = memorization_test(
        fake_f.features,
        train_f.features,
        memorization_k,
        memorization_alpha,
        memorization_threshold,
        space=space,
        progress=progress,
    )
    for mem, label in ((mem_pixel, "pixel space"), (mem_feature, f"{space} features")):
        key = "pixel" if mem is mem_pixel else "feature"
        report.add(
            f"Memorised fraction ({label}, Carlini ℓ < {mem.threshold:.2g})",
            mem.fraction_flagged,
            key=f"memorized_fraction_{key}",
            higher_is_better=False,
        )
        report.details[f"memorization_{key}"] = mem.to_dict()
    report.add(
        "Median L2 distance to nearest training image (pixel space, [0, 1] scale)",
        float(mem_pixel.nearest_distance.median()),
        key="nn_distance_pixel",
    )
    if mem_pixel.flagged.any():
        report.warnings.append(
            f"{int(mem_pixel.flagged.sum())} generated images are near-copies of training images in pixel space "
            f"(indices {mem_pixel.to_dict(10)['flagged_indices']}...)."
        )
    return mem_pixel


def _add_plots(report, output_dir, fake_x, train_x, mem_pixel, prdc, space: str, nearest_k: int) -> None:
    """Nearest-neighbour, PRDC and class-histogram PNGs into `output_dir` (listed in `report.artifacts`)."""
    from ..viz.evaluation import plot_class_histogram, plot_metric_bars, plot_nearest_neighbours

    report.artifacts["nearest_neighbours"] = plot_nearest_neighbours(
        fake_x, train_x, mem_pixel, os.path.join(output_dir, "nearest_neighbours.png")
    )
    report.artifacts["prdc"] = plot_metric_bars(
        {k: v for k, v in prdc.to_dict().items() if k != "nearest_k"},
        os.path.join(output_dir, "prdc.png"),
        title=f"Precision / recall / density / coverage ({space} features, k={nearest_k})",
    )
    if "class_coverage" in report.details:
        cov = report.details["class_coverage"]
        report.artifacts["class_histogram"] = plot_class_histogram(
            cov["fake_histogram"],
            cov["real_histogram"],
            os.path.join(output_dir, "class_histogram.png"),
            title=f"Predicted classes ({space} classifier)",
        )
