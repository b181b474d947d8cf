"""Explain a generation and draw it: the explainers of `explain/` and the plots of `viz/` on one traced run, for the
end-of-training explanation card, the quickstart and users.

Images go through [`explain_generation`] (GradCAM, attention, captum maps with deletion/insertion scores). Tables and
series use the same explainer classes ([`DenoiserAttribution`], [`DenoiserShap`]) over `[B, F]` rows and
`[B, C, L]` windows, plus commit steps; this module runs them on one traced generation and scores each attribution
as the image explainers are scored: integrated gradients' completeness error (Sundararajan et al. 2017) as a
faithfulness number, and Adebayo et al.'s model-randomisation check (Spearman correlation of |attributions| from the
trained and from a fully re-initialised denoiser) as the sanity check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..explain import ExplanationTarget

__all__ = ["ATTRIBUTION_CARD_METHODS", "explain_generation", "explain_rows"]

ATTRIBUTION_CARD_METHODS = ("integrated_gradients", "occlusion", "saliency", "shap", "commit_steps")


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from torchmetrics.functional import spearman_corrcoef

    return round(float(spearman_corrcoef(a.abs().flatten().double(), b.abs().flatten().double())), 6)


def explain_rows(
    pipeline,
    trace,
    attribute: Callable,
    methods: tuple[str, ...],
    output_dir: str,
    plot_attributions: Callable[[object, str], str],
    commit_figure: Callable[[object, str], str],
    seed: int = 0,
    modality: str = "tabular",
    **attribute_kwargs,
) -> dict:
    """
    Attribute at the middle recorded step of `trace` with each method of `methods` (`integrated_gradients`,
    `shap`), plot the commit steps (`commit_steps`), and return [`ExplanationCardData`] fields.

    Args:
        pipeline: a [`TabularXAIPipeline`] or [`TimeSeriesXAIPipeline`] (with `denoiser`, `scheduler`,
            `preprocessor`).
        trace ([`Trace`]): the traced generation to explain.
        attribute (`callable`): `(explainer, trace, **kwargs) -> explanation` with `.attributions`, `.delta` (and
            `.condition` for tables): [`column_attributions`] or the explainer's own `attribute`.
        plot_attributions (`callable`): `(explanation, path) -> path` of the PNG.
        commit_figure (`callable`): `(trace, path) -> path`: computes and plots the commit steps.
        modality (`str`, *optional*): the modality's name, which picks the explainers' defaults
            ([`build_explainer`]; tables and series have the same).
        **attribute_kwargs: passed to `attribute()` (e.g. `class_labels=`).
    """
    from ..explain import build_explainer, randomize_model

    recorded = [s.timestep for s in trace.steps if s.latents is not None]
    t = recorded[len(recorded) // 2]
    figures, explainers, faithfulness, sanity = {}, {}, {}, {}
    random_pipeline = type(pipeline)(
        denoiser=randomize_model(pipeline.denoiser, seed),
        scheduler=pipeline.scheduler,
        preprocessor=pipeline.preprocessor,
    )
    for method in (m for m in methods if m != "commit_steps"):
        kwargs = dict(attribute_kwargs, timesteps=[t], seed=seed)
        if method == "integrated_gradients":
            kwargs["return_convergence_delta"] = True
        explanation = attribute(build_explainer(pipeline, method, modality), trace, **kwargs)
        path = plot_attributions(explanation, os.path.join(output_dir, f"{method}.png"))
        figures[method] = {
            "path": path,
            "caption": f"{method.replace('_', ' ')} of the model's x0 term w.r.t. x_t at t={t}",
        }
        attributions = (
            explanation.attributions[0] if isinstance(explanation.attributions, tuple) else explanation.attributions
        )
        explainers[method] = {"timesteps": [t], "num_samples": int(attributions.shape[1])}
        if explanation.delta is not None:
            # completeness: sum(attributions) = f(x_t) - f(baseline) exactly for ideal IG; the error is the Riemann gap
            total = attributions.reshape(*explanation.delta.shape, -1).sum(-1)
            if getattr(explanation, "condition", None) is not None:
                total = total + explanation.condition
            faithfulness[method] = {
                "completeness_error_mean_abs": round(float(explanation.delta.abs().mean()), 6),
                "attribution_sum_mean_abs": round(float(total.abs().mean()), 6),
            }
        random_explanation = attribute(build_explainer(random_pipeline, method, modality), trace, **kwargs)
        random_attributions = random_explanation.attributions
        if isinstance(random_attributions, tuple):
            random_attributions = random_attributions[0]
        sanity[method] = {"spearman_vs_randomized_model": _spearman(attributions, random_attributions)}
    if "commit_steps" in methods:
        path = commit_figure(trace, os.path.join(output_dir, "commit_steps.png"))
        figures["commit_steps"] = {"path": path, "caption": "denoising step at which each output settles"}
        explainers["commit_steps"] = {"timesteps": recorded}
    return {
        "figures": figures,
        "explainers": explainers,
        "faithfulness": faithfulness or None,
        "sanity_checks": sanity or None,
    }


def explain_generation(
    pipe,
    output,
    out_dir: str | os.PathLike,
    methods: Sequence[str] | None = None,
    sample_index: int = 0,
    target: ExplanationTarget | Callable | None = None,
    timesteps: Sequence[int] | None = None,
    faithfulness: bool = True,
    sanity_check: bool = True,
    gif: bool = True,
    **explainer_kwargs,
) -> dict:
    r"""
    Explain one generated sample with every method, write the PNGs and `explanations.json` into `out_dir`, and return
    the JSON content: per method the written files, the mean deletion/insertion AUCs against random maps and the
    model-randomisation SSIM / Spearman correlation; plus the trajectory numbers.

    Example:

    ```py
    >>> out = pipe(batch_size=4, num_inference_steps=50, trace=TraceConfig(attention=True), output_type="pt")
    >>> summary = explain_generation(pipe, out, "outputs/quickstart/explanations")
    >>> summary["methods"]["gradcam"]["faithfulness"]["deletion_gain"]
    ```
    """
    from ..explain import DEFAULT_METHODS, Explainer
    from ..viz.report import save_explanation_report

    explainer = Explainer(
        pipe,
        methods=DEFAULT_METHODS if methods is None else methods,
        target=target,
        faithfulness=faithfulness,
        sanity_check=sanity_check,
        **explainer_kwargs,
    )
    # a class-conditional generation carries its labels (`DiffusionXAIPipelineOutput.class_labels`): explain the
    # model as it sampled that image
    labels = getattr(output, "class_labels", None)
    labels = labels[sample_index : sample_index + 1] if labels is not None else None
    report = explainer.explain(output, sample_index=sample_index, timesteps=timesteps, class_labels=labels)
    summary = save_explanation_report(report, out_dir, gif=gif)
    summary["out_dir"] = str(Path(out_dir))
    return summary
