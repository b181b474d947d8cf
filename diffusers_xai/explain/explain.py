r"""`Explainer`: explain one generation of a pipeline with every method and score the maps.
`viz.save_explanation_report` draws them into PNGs and a JSON; `modalities.explanations.explain_generation` does
both."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..capture import Trace
from ..utils.images import to_display_images
from .attention import AttentionExplainer
from .attributions import ATTRIBUTION_METHODS, DenoiserAttribution
from .base import DenoiserExplainer, ExplanationResult, check_explained_guidance, progress, select_sample
from .checks import faithfulness_curves
from .faithfulness import FaithfulnessResult
from .gradcam import DenoiserGradCAM
from .randomization import SanityCheckResult, model_randomization_check
from .shap_explainer import DenoiserShap
from .target import ExplanationTarget, resolve_target
from .trajectory import TrajectoryAnalysis, analyze_trajectory
from .verdicts import passing_methods

__all__ = [
    "DEFAULT_METHODS",
    "EXPLAIN_METHODS",
    "IMAGE_INIT_DEFAULTS",
    "INIT_DEFAULTS",
    "ExplanationReport",
    "Explainer",
    "build_explainer",
]

logger = logging.getLogger(__name__)

EXPLAIN_METHODS = ("trajectory", "attention", "gradcam", *ATTRIBUTION_METHODS, "shap", "shap_partition")
# `shap_partition` is opt-in: shap's Partition explainer JIT-compiles numba code on first use (tens of seconds).
# The trajectory analysis plus the map methods that passed all three checks on the digits model
# (`bench/explain_faithfulness.py` → diffusers_xai/explain/verdicts.json); a method that failed stays available by name
# and is shown failing, with its numbers, on the card and in the Space.
DEFAULT_METHODS = ("trajectory", *(m for m in passing_methods("image") if m in EXPLAIN_METHODS))
# per-method `attribute()` defaults that keep one explained step at a few dozen forward passes
_ATTRIBUTE_DEFAULTS = {
    "integrated_gradients": {"n_steps": 32},
    "gradient_shap": {"n_samples": 16},
    "shap": {"nsamples": 64},
    "shap_partition": {"max_evals": 256},
    "gradcam": {"relu_attributions": True},
}


# per-method constructor defaults of the image explainers: what `Explainer` builds and the benchmark checks
# (`bench/explain_faithfulness.py`, `bench/explain_variants.py --modalities image`; issue 13):
# - IG's baseline is a fresh-noise draw at the step's level (x_t of the mean image, `noise_level_baselines`), not
#   x' = 0, which no denoiser sees at any step (with x' = 0 IG's "why this class" map peaked on the digit);
# - GradCAM is HiResCAM (Draelos & Carin 2020: the gradient per position, not its spatial mean) of the last up block,
#   the layer at the output's resolution. The all-block GradCAM mean misses the planted class's corner. Plain GradCAM
#   of the last up block passes all three checks on the paired planted model, but is refused on a UNet whose last up
#   block has one channel per GroupNorm group (`vanishing_gradcam_layers`); HiResCAM is defined on every UNet.
IMAGE_INIT_DEFAULTS = {
    "integrated_gradients": {"baselines": "noise"},
    "gradcam": {"layer": "output_block", "weighting": "hirescam"},
}
# constructor defaults per modality name (tables and series: the explainers' own defaults, e.g. IG from the mean row)
INIT_DEFAULTS = {"image": IMAGE_INIT_DEFAULTS}


def build_explainer(
    model, method: str, modality: str, target: ExplanationTarget | Callable | None = None, **init
) -> DenoiserExplainer:
    r"""
    The explainer behind one method name of [`EXPLAIN_METHODS`], built as the explanation cards, the Space and the
    benchmarks build it: the modality's constructor defaults ([`INIT_DEFAULTS`]; images: [`IMAGE_INIT_DEFAULTS`])
    updated with `init`. `trajectory` has no map explainer ([`analyze_trajectory`]).

    Args:
        model: a pipeline, or any object with the denoiser and `scheduler`.
        method (`str`): `"gradcam"`, `"attention"`, a captum method of [`ATTRIBUTION_METHODS`], `"shap"`
            (`shap.GradientExplainer`) or `"shap_partition"`.
        modality (`str`): the modality's name (`"image"`, `"tabular"`, `"timeseries"`), which picks the defaults.
        target ([`ExplanationTarget`] or callable, *optional*): what is explained (default: the model's term of
            $\hat{x}_0$); `attention` maps the model's own attention and takes none.
        **init: constructor keywords (e.g. `layer="mid_block"` for GradCAM).
    """
    init = {**INIT_DEFAULTS.get(modality, {}).get(method, {}), **init}
    if method == "attention":
        return AttentionExplainer(model, **init)
    if method == "gradcam":
        return DenoiserGradCAM(model, target=target, **init)
    if method in ATTRIBUTION_METHODS:
        return DenoiserAttribution(model, method, target=target, **init)
    if method in ("shap", "shap_partition"):
        return DenoiserShap(model, "gradient" if method == "shap" else "partition", target=target, **init)
    raise ValueError(
        f"Method {method!r} has no map explainer; choose from {[m for m in EXPLAIN_METHODS if m != 'trajectory']}."
    )


def _check_methods(methods: Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if m not in EXPLAIN_METHODS]
    if unknown:
        raise ValueError(f"Unknown explanation method(s) {unknown}; choose from {list(EXPLAIN_METHODS)}.")
    return list(dict.fromkeys(methods))


def _evenly(items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)] if k > 1 else [items[len(items) // 2]]


@dataclass
class ExplanationReport:
    r"""
    Everything [`Explainer.explain`] computed for one generated sample.

    Args:
        sample_index (`int`): which sample of the batch.
        timesteps (`list[int]`): the explained timesteps.
        image (`torch.Tensor`): the generated image `[1, C, H, W]` in [0, 1] (for plotting).
        trace ([`Trace`]): the trace of that sample only.
        results (`dict[str, ExplanationResult]`): method → maps `[K, 1, 1, H, W]`.
        trajectory ([`TrajectoryAnalysis`], *optional*).
        faithfulness (`dict[str, list[FaithfulnessResult]]`): method → one result per explained step.
        sanity (`dict[str, SanityCheckResult]`): method → model-randomisation check at the middle explained step.
        guidance_scale (`float`): the classifier-free guidance whose mix was explained (1: the model alone).
    """

    sample_index: int
    timesteps: list[int]
    image: torch.Tensor
    trace: Trace
    results: dict[str, ExplanationResult] = field(default_factory=dict)
    trajectory: TrajectoryAnalysis | None = None
    faithfulness: dict[str, list[FaithfulnessResult]] = field(default_factory=dict)
    sanity: dict[str, SanityCheckResult] = field(default_factory=dict)
    guidance_scale: float = 1.0

    def summary(self) -> dict:
        """JSON-able numbers: per method, the mean faithfulness AUCs (vs random) and the sanity-check similarity."""
        out = {"sample_index": self.sample_index, "timesteps": self.timesteps, "methods": {}}
        if self.guidance_scale != 1:
            out["guidance_scale"] = self.guidance_scale
        for name, result in self.results.items():
            entry: dict = {"maps_shape": list(result.maps.shape), "timesteps": result.timesteps}
            if name in self.faithfulness:
                per_step = [f.summary() for f in self.faithfulness[name]]
                keys = [k for k in per_step[0] if k != "protocol"]
                entry["faithfulness"] = {"protocol": per_step[0]["protocol"]}
                entry["faithfulness"] |= {k: _mean([s[k] for s in per_step]) for k in keys} | {
                    "per_step": dict(zip(map(str, result.timesteps), per_step))
                }
            if name in self.sanity:
                entry["sanity_check"] = self.sanity[name].summary()
            out["methods"][name] = entry
        if self.trajectory is not None:
            out["trajectory"] = self.trajectory.summary(0)
        return out


def _mean(values: list) -> float | None:
    nums = [v for v in values if v is not None]
    return round(sum(nums) / len(nums), 6) if nums else None


class Explainer:
    r"""
    Explain a generation of a diffusers pipeline: one object, every method, with faithfulness and sanity scores.

    Consumes the output of a pipeline called with `trace=True` (or its [`Trace`]); it never re-samples. For each
    method it explains the recorded $x_t$ at a few steps (K forward+backward passes), scores each map with
    deletion/insertion AUCs against random maps at that step, deleted pixels replaced by fresh noise at the step's
    noise level ([`faithfulness_curves`]; CIs over many samples: [`faithfulness_check`]) and runs the
    model-randomisation check at the middle step ([`model_randomization_check`]; the cascade:
    [`cascading_randomization`]).

    Args:
        pipe (`DiffusionPipeline`): a pipeline with `unet` and `scheduler` (or any object with both).
        methods (`list[str]`, *optional*, defaults to [`DEFAULT_METHODS`]): from [`EXPLAIN_METHODS`].
        target ([`ExplanationTarget`] or callable, *optional*): what is explained (default: the model's term of
            $\hat{x}_0$).
        num_explained_steps (`int`, *optional*, defaults to 3): evenly spaced recorded steps to explain.
        faithfulness (`bool`, *optional*, defaults to `True`): compute deletion/insertion AUCs.
        sanity_check (`bool`, *optional*, defaults to `True`): run the model-randomisation check.
        method_kwargs (`dict[str, dict]`, *optional*): per-method `attribute()` keywords (e.g.
            `{"integrated_gradients": {"n_steps": 64}}`) and constructor keywords under `"init"` (e.g.
            `{"gradcam": {"init": {"layer": "mid_block"}}}`).
        seed (`int`, *optional*, defaults to 0): seeds random baselines, random maps and re-initialisation.
        guidance_scale (`float`, *optional*): the classifier-free guidance scale whose mix every method and check
            explains ([`DenoiserExplainer.guided`]); by default the one the trace records, i.e. the function that
            sampled the run (1 explains the conditional model alone).

    Example:

    ```py
    >>> out = pipe(batch_size=4, num_inference_steps=50, trace=TraceConfig(attention=True), output_type="pt")
    >>> report = Explainer(pipe).explain(out, sample_index=0)
    >>> report.summary()["methods"]["gradcam"]["faithfulness"]["deletion_auc"]
    >>> save_explanation_report(report, "outputs/explanations")  # diffusers_xai.viz: the PNGs and explanations.json
    ```
    """

    def __init__(
        self,
        pipe,
        methods: Sequence[str] = DEFAULT_METHODS,
        target: ExplanationTarget | Callable | None = None,
        num_explained_steps: int = 3,
        faithfulness: bool = True,
        sanity_check: bool = True,
        method_kwargs: dict[str, dict] | None = None,
        seed: int = 0,
        guidance_scale: float | None = None,
    ):
        if getattr(pipe, "unet", None) is None or getattr(pipe, "scheduler", None) is None:
            raise TypeError(f"Explainer needs a pipeline with `unet` and `scheduler`, got {type(pipe).__name__}.")
        if num_explained_steps < 1:
            raise ValueError(f"`num_explained_steps` must be >= 1, got {num_explained_steps}.")
        self.pipe = pipe
        self.methods = _check_methods(methods)
        self.target = resolve_target(target)
        self.num_explained_steps = num_explained_steps
        self.faithfulness = faithfulness
        self.sanity_check = sanity_check
        self.method_kwargs = method_kwargs or {}
        unknown = [m for m in self.method_kwargs if m not in EXPLAIN_METHODS]
        if unknown:
            raise ValueError(f"`method_kwargs` names unknown methods {unknown}; choose from {list(EXPLAIN_METHODS)}.")
        self.seed = seed
        if guidance_scale is not None:
            check_explained_guidance(guidance_scale, getattr(pipe, "null_class_label", None))
        self.guidance_scale = guidance_scale

    def explainer_for(self, method: str, guidance_scale: float | None = None) -> DenoiserExplainer:
        """The explainer object behind one method name ([`build_explainer`] with `method_kwargs[method]["init"]`),
        explaining the guided mix at `guidance_scale` (default: the Explainer's, else 1)."""
        init = self.method_kwargs.get(method, {}).get("init", {})
        scale = guidance_scale if guidance_scale is not None else self.guidance_scale
        return build_explainer(self.pipe, method, "image", self.target, **init).guided(1.0 if scale is None else scale)

    def _attribute_kwargs(self, method: str, conditioning: dict) -> dict:
        kwargs = dict(_ATTRIBUTE_DEFAULTS.get(method, {}))
        if method in ATTRIBUTION_METHODS or method in ("shap", "shap_partition"):
            kwargs["seed"] = self.seed
        kwargs.update({k: v for k, v in self.method_kwargs.get(method, {}).items() if k != "init"})
        kwargs.update(conditioning)
        return kwargs

    def explain(
        self,
        output,
        sample_index: int = 0,
        timesteps: Sequence[int] | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> ExplanationReport:
        r"""
        Explain sample `sample_index` of a pipeline output (with a trace) or of a [`Trace`].

        Args:
            output (`DiffusionXAIPipelineOutput` or [`Trace`]): what the pipeline returned with `trace=...`.
            sample_index (`int`, *optional*, defaults to 0): the sample of the batch to explain.
            timesteps (`list[int]`, *optional*): recorded timesteps to explain (default: `num_explained_steps`
                evenly spaced recorded steps).
            encoder_hidden_states, class_labels (*optional*): conditioning of conditional denoisers, for that sample.

        Returns:
            [`ExplanationReport`].
        """
        trace = output if isinstance(output, Trace) else getattr(output, "trace", None)
        if not isinstance(trace, Trace):
            raise ValueError("The output holds no trace: call the pipeline with `trace=True` (or a TraceConfig).")
        if not any(s.latents is not None for s in trace.steps):
            raise ValueError("The trace holds no latents x_t; record them with TraceConfig(latents=True).")
        batch_size = next(s.latents for s in trace.steps if s.latents is not None).shape[0]
        trace = select_sample(trace, sample_index)  # raises on an index outside the batch
        sample_index %= batch_size
        recorded = [s.timestep for s in trace.steps if s.latents is not None]
        if timesteps is None:
            timesteps = _evenly(recorded, self.num_explained_steps)
        else:
            timesteps = [int(t) for t in timesteps]
        image = self._image(output, trace, sample_index)
        conditioning = {}
        if encoder_hidden_states is not None:
            conditioning["encoder_hidden_states"] = encoder_hidden_states
        if class_labels is not None:
            conditioning["class_labels"] = class_labels
        scale = self.guidance_scale if self.guidance_scale is not None else trace.guidance_scale
        report = ExplanationReport(
            sample_index=sample_index, timesteps=list(timesteps), image=image, trace=trace, guidance_scale=scale
        )
        random_curves: dict = {}  # per timestep, shared by every method
        if "trajectory" in self.methods:
            if any(s.pred_original_sample is not None for s in trace.steps) and len(trace.steps) > 1:
                report.trajectory = analyze_trajectory(trace, self.pipe.scheduler)
            else:
                logger.warning("Skipping trajectory analysis: it needs pred_original_sample at two or more steps.")
        for method in progress([m for m in self.methods if m != "trajectory"], desc="explain"):
            explainer = self.explainer_for(method, scale)
            kwargs = self._attribute_kwargs(method, conditioning)
            result = explainer.attribute(trace, timesteps=timesteps, **kwargs)
            report.results[method] = result
            if self.faithfulness:
                report.faithfulness[method] = self._faithfulness(explainer, trace, result, conditioning, random_curves)
            if self.sanity_check:
                mid = [timesteps[len(timesteps) // 2]]
                report.sanity[method] = model_randomization_check(
                    explainer, trace, init_seed=self.seed, timesteps=mid, **kwargs
                )
        return report

    def _faithfulness(
        self, explainer, trace: Trace, result: ExplanationResult, conditioning: dict, random_curves: dict
    ) -> list[FaithfulnessResult]:
        """Deletion/insertion per explained step with fresh noise at the step's noise level ([`faithfulness_curves`]),
        on the report's target; the random-map curves are shared by every method."""
        _, per_step = faithfulness_curves(
            explainer, trace, result.timesteps, result, seed=self.seed, random_curves_cache=random_curves,
            target=self.target, **conditioning,
        )  # fmt: skip
        return per_step

    @staticmethod
    def _image(output, trace: Trace, sample_index: int) -> torch.Tensor:
        images = getattr(output, "images", None)
        if images is not None:
            if isinstance(images, list):
                return to_display_images([images[sample_index]])
            return to_display_images(images[sample_index : sample_index + 1], (0.0, 1.0))
        last = trace.stack("pred_original_sample")[-1]
        return to_display_images(last.float().clamp(-1, 1), (-1.0, 1.0))
