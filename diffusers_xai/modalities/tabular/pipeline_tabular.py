"""`TabularXAIPipeline`: TabDDPM-style row generation with a [`TabularDenoiser`], returned in the table's schema."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from diffusers import DiffusionPipeline
from diffusers.models.modeling_utils import ModelMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ...capture import Trace, TraceConfig
from ...pipelines.base import PreprocessedPipelineMixin, SamplingRun
from ...pipelines.guidance import check_guidance_scale
from ...pipelines.schedulers import injects_noise

# diffusers' `from_pretrained` only loads a component class from a module that is already imported: our denoisers
from .denoiser import TabularDenoiser  # noqa: F401
from .preprocessor import QUANTILE_NORMAL_BOUND, TabularPreprocessor

__all__ = [
    "TABLE_SCHEDULER_KWARGS",
    "TabularXAIPipeline",
    "TabularXAIPipelineOutput",
]

logger = logging.getLogger(__name__)

# Rows live in [-B, B], B = QUANTILE_NORMAL_BOUND (~5.2, where sklearn's quantile-normal transform clips; the ±1
# categorical codes are inside). DDPM's default x0 clip to [-1, 1] would distort them; no clip at all lets the
# last steps of a cosine schedule (beta_t -> 0.999, x_{t-1} gets 1/sqrt(alpha_t) ~ 30x the noise-prediction error)
# diverge: DDPM with 1000 steps produced |x| ~ 1e4 on breast cancer. Clipping x0 to the data's own support is exact
# on real rows and removes the blow-up. DPM-Solver's dynamic thresholding rescales x0 to [-1, 1]: off. It has no x0
# clip, so it must not start at t = T-1 (the pixel default "trailing" spacing): with the cosine schedule sigma/alpha
# is 20,291 at t=999 (13 at t=950), and DPM-Solver++'s first data prediction multiplies the noise-prediction error by
# it (|x| ~ 1e4 from an untrained model; the benchmark's six tables scored detection AUC 1.0). "leading" starts at
# t=950, where alpha_bar = 0.006, so x_T ~ N(0, I) is x_950 up to that; `bench/tabular_quality.py` measures it.
TABLE_SCHEDULER_KWARGS = {
    "ddpm": {"clip_sample": True, "clip_sample_range": QUANTILE_NORMAL_BOUND},
    "ddim": {"clip_sample": True, "clip_sample_range": QUANTILE_NORMAL_BOUND},
    "dpmsolver": {"thresholding": False, "timestep_spacing": "leading"},
}


def _has_null_class(denoiser) -> bool:
    """Whether the denoiser's last class embedding is the null class (`null_class`; absent in older saves: no)."""
    return bool(getattr(denoiser.config, "null_class", False))


def _check_match(denoiser, preprocessor: TabularPreprocessor) -> None:
    """The denoiser must have been trained on this preprocessor's feature layout and condition column."""
    width = getattr(denoiser.config, "in_features", None)
    if width != preprocessor.num_features:
        raise ValueError(
            f"The denoiser expects {width} features per row but the preprocessor produces "
            f"{preprocessor.num_features} ({len(preprocessor.numerical)} numerical, {len(preprocessor.categorical)} "
            f"categorical, encoding={preprocessor.config.categorical_encoding!r}); load the preprocessor saved with "
            "this model, or rebuild the denoiser with in_features=preprocessor.num_features and retrain."
        )
    classes, levels = getattr(denoiser.config, "num_class_embeds", None), preprocessor.num_classes
    # K embeddings, or K + 1 when the last is the null class of classifier-free guidance (`class_dropout_prob`)
    null = _has_null_class(denoiser)
    if classes != (None if levels is None else levels + int(null)):
        raise ValueError(
            f"The denoiser has num_class_embeds={classes}{' (the last one the null class)' if null else ''} but the "
            f"preprocessor's condition column {preprocessor.config.condition_column!r} has {levels} classes; use the "
            "matching preprocessor or retrain the denoiser with num_class_embeds=preprocessor.num_classes (+ 1 with "
            "null_class=True for guidance)."
        )


@dataclass
class TabularXAIPipelineOutput(BaseOutput):
    """
    Output of [`TabularXAIPipeline`].

    Args:
        rows (`pd.DataFrame` or `torch.Tensor`): the generated table in the original schema (`output_type="pd"`),
            or model-space rows `[num_rows, num_features]` (`output_type="pt"`).
        class_labels (`torch.Tensor` `[num_rows]`, *optional*): class indices of the condition column used.
        trace ([`Trace`], *optional*): the per-step record, when `trace=` was set.
    """

    rows: pd.DataFrame | torch.Tensor
    class_labels: torch.Tensor | None = None
    trace: Trace | None = None


class TabularXAIPipeline(PreprocessedPipelineMixin, DiffusionPipeline):
    r"""
    Generate table rows with a diffusion model, in the original schema, optionally conditioned on one column and
    traced step by step.

    Rows are sampled in the preprocessor's model space (quantile-normal numericals, ±1 categorical codes) with any
    diffusers scheduler, then mapped back by [`TabularPreprocessor.inverse_transform`]: original column names and
    order, dtypes (int and bool kept), category sets, value ranges, decimals, date formats, missing values (drawn
    by the model under `nan_policy="model"`) and fresh identifiers.

    Args:
        denoiser ([`TabularDenoiser`]): $\epsilon_\theta(x_t, t[, y])$ (or $v$/$x_0$ predictor).
        scheduler ([`SchedulerMixin`]): [`DDPMScheduler`], [`DDIMScheduler`] or [`DPMSolverMultistepScheduler`],
            with $x_0$ clipped to the data's support $[-5.2, 5.2]$, not $[-1, 1]$ (see
            [`TabularXAIPipeline.set_scheduler`]).
        preprocessor ([`TabularPreprocessor`]): the fitted schema and transforms, saved with the pipeline.

    Example:

    ```py
    >>> from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
    >>> pipe = TabularXAIPipeline.from_pretrained("outputs/wine/pipeline")
    >>> out = pipe(num_rows=500, class_labels=[0] * 500, num_inference_steps=100, trace=True)
    >>> out.rows.head(); out.trace.stack("pred_original_sample").shape  # [S, 500, num_features]
    ```
    """

    preprocessor_class = TabularPreprocessor

    def __init__(self, denoiser: ModelMixin, scheduler: SchedulerMixin, preprocessor: TabularPreprocessor):
        super().__init__()
        self.register_components(denoiser, scheduler, preprocessor)
        narrow_clip = getattr(scheduler.config, "clip_sample", False) and (
            scheduler.config.clip_sample_range < QUANTILE_NORMAL_BOUND - 1e-6
        )
        if narrow_clip or getattr(scheduler.config, "thresholding", False):
            logger.warning(
                "The scheduler clips/thresholds x0 to [-1, 1], which distorts quantile-normal columns; use "
                f"`pipe.set_scheduler(name)` (clip_sample_range={QUANTILE_NORMAL_BOUND:.4f}, thresholding=False)."
            )

    @classmethod
    def scheduler_defaults(cls, name: str, preprocessor: TabularPreprocessor) -> dict:
        """x0 clipped to the data's support (not [-1, 1]), DPM-Solver unthresholded: `TABLE_SCHEDULER_KWARGS`."""
        return dict(TABLE_SCHEDULER_KWARGS.get(name, {}))

    check_match = staticmethod(_check_match)

    # ---- what the skeleton ([`XAIPipelineMixin`]) needs ----
    count_name = "num_rows"
    output_types = ("pd", "pt")

    @property
    def sample_shape(self) -> tuple[int]:
        return (self.preprocessor.num_features,)

    @property
    def null_class_label(self) -> int | None:
        """$K$, the null class of a denoiser trained with `class_dropout_prob` (`null_class=True`, `num_class_embeds`
        = K + 1), which classifier-free guidance contrasts with; `None` otherwise."""
        return self.preprocessor.num_classes if _has_null_class(self.denoiser) else None

    def prepare_conditioning(
        self, batch_size: int, generator=None, class_labels: Any = None, guidance_scale: float = 1.0
    ) -> dict:
        """`{"class_labels": [num_rows]}` for a conditional denoiser, with `"guidance_scale"` when it is above 1
        (taken out again by [`XAIPipelineMixin.denoise`])."""
        embeds, levels = self.denoiser.config.num_class_embeds, self.preprocessor.num_classes
        check_guidance_scale(
            guidance_scale,
            self.null_class_label,
            without=f"this denoiser has no null class (num_class_embeds={embeds} for {levels} classes)",
            fix="train with a condition_column and class_dropout_prob: 0.1",
        )
        labels = self.prepare_class_labels(class_labels, batch_size, generator)
        if labels is None:
            return {}
        return {"class_labels": labels, **({"guidance_scale": float(guidance_scale)} if guidance_scale > 1 else {})}

    def postprocess(self, x: torch.Tensor, output_type: str, run: SamplingRun | None = None):
        if output_type == "pt":
            return x
        labels = run.model_kwargs.get("class_labels") if run is not None else None
        seed = _level_seeds(run.generator if run is not None else None)
        stochastic = injects_noise(self.scheduler, run.eta if run is not None else 0.0)
        return self.preprocessor.inverse_transform(x, labels, seed, levels="posterior", stochastic=stochastic)

    def prepare_class_labels(self, class_labels: Any, num_rows: int, generator=None) -> torch.Tensor | None:
        """
        `class_labels` → `[num_rows]` long indices of the condition column. A `torch.Tensor` is read as indices;
        anything else (a value, a list, an array, a Series) as values of the column. `None` draws labels from the
        training class frequencies (each row's from its own generator when `generator` is a list).
        """
        pre = self.preprocessor
        if pre.condition is None:
            if class_labels is not None:
                raise ValueError(
                    "`class_labels` were given but this pipeline is unconditional; draw rows with given values of "
                    "a column by rejection with `diffusers_xai.modalities.tabular.sample_with_values`, or train with "
                    "`condition_column` to condition."
                )
            return None
        device = self._execution_device
        if class_labels is None:
            probs = pre.class_probabilities.float()
            if isinstance(generator, list):  # one per row: a row's class depends on its own generator alone
                labels = torch.cat([torch.multinomial(probs, 1, generator=g) for g in generator])
            else:
                labels = torch.multinomial(probs, num_rows, replacement=True, generator=generator)
        elif isinstance(class_labels, torch.Tensor):
            labels = class_labels.long().reshape(-1)
            if labels.numel() and (labels.min() < 0 or labels.max() >= pre.num_classes):
                raise ValueError(
                    f"Class indices must be in [0, {pre.num_classes}) for {pre.condition['name']!r} "
                    f"(levels {pre.condition['categories']}), got {labels.unique().tolist()}."
                )
        else:
            scalar = isinstance(class_labels, (str, int, float, bool, np.generic))
            values = [class_labels] if scalar else list(class_labels)
            labels = pre.encode_labels(values)
        if labels.numel() == 1:
            labels = labels.expand(num_rows)
        if labels.numel() != num_rows:
            raise ValueError(
                f"Got {labels.numel()} class labels for num_rows={num_rows}; pass one or num_rows labels."
            )
        return labels.to(device)

    @torch.no_grad()
    def __call__(
        self,
        num_rows: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        class_labels: Any = None,
        guidance_scale: float = 1.0,
        eta: float = 0.0,
        num_inference_steps: int = 1000,
        latents: torch.Tensor | None = None,
        trace: bool | TraceConfig | dict | None = None,
        output_type: str = "pd",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> TabularXAIPipelineOutput | tuple:
        r"""
        Generate rows, optionally conditioned on the condition column and recording a [`Trace`].

        Args:
            num_rows (`int`, *optional*, defaults to 1): number of rows.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): for reproducible sampling.
            class_labels (*optional*): values of the condition column (one value, or one per row), or a
                `torch.Tensor` of class indices; `None` samples them from the training frequencies.
            guidance_scale (`float`, *optional*, defaults to 1.0): classifier-free guidance towards `class_labels`
                (Ho & Salimans 2022; 1 = the conditional model alone), for a denoiser trained with
                `class_dropout_prob` > 0.
            eta (`float`, *optional*, defaults to 0.0): DDIM's $\eta$.
            num_inference_steps (`int`, *optional*, defaults to 1000): between 1 and `num_train_timesteps`.
            latents (`torch.Tensor`, *optional*): $x_T$ `[num_rows, num_features]` instead of fresh noise.
            trace (`bool`, `dict` or [`TraceConfig`], *optional*): `True` for the default [`TraceConfig`]; the trace's
                `latents`/`pred_original_sample` are model-space rows `[num_rows, num_features]`.
            output_type (`str`, *optional*, defaults to `"pd"`): `"pd"` (a DataFrame in the original schema) or
                `"pt"` (model-space rows).
            return_dict (`bool`, *optional*, defaults to `True`).
            callback_on_step_end, callback_on_step_end_tensor_inputs (*optional*): diffusers' step-end callback
                (a function or `PipelineCallback`) and what it reads (`["latents"]`): [`XAIPipelineMixin.sample`].

        Returns:
            [`TabularXAIPipelineOutput`] or `tuple` `(rows, class_labels, trace)`.
        """
        self.check_output_type(output_type)
        run = self.sample(
            trace, batch_size=num_rows, generator=generator, eta=eta, num_inference_steps=num_inference_steps,
            latents=latents, class_labels=class_labels, guidance_scale=guidance_scale,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        rows = self.postprocess(run.final_sample, output_type, run)
        labels = run.model_kwargs.get("class_labels")
        self.maybe_free_model_hooks()
        if not return_dict:
            return (rows, labels, run.trace)
        return TabularXAIPipelineOutput(rows=rows, class_labels=labels, trace=run.trace)


def _level_seeds(generator) -> int | list[int]:
    """
    Seeds of the `posterior` level draws, drawn after sampling so the rows themselves do not change: one per row from
    a list of per-row generators, so that a row's levels depend on its own generator alone, whatever batch it is
    generated in (what `diffusers-xai generate` promises of every sample); else one for the call.
    """
    if isinstance(generator, list):
        return [int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device)) for g in generator]
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))
