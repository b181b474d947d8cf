"""`TimeSeriesXAIPipeline`: fixed-length multivariate windows from a 1-D denoiser, in the original units."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from diffusers import DiffusionPipeline
from diffusers.models.modeling_utils import ModelMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ...capture import Trace, TraceConfig
from ...pipelines.base import PreprocessedPipelineMixin

# diffusers' `from_pretrained` only loads a component class from a module that is already imported: our denoisers
from .denoiser import TimeSeriesDenoiser  # noqa: F401
from .preprocessor import TimeSeriesPreprocessor

__all__ = ["TimeSeriesXAIPipeline", "TimeSeriesXAIPipelineOutput"]

logger = logging.getLogger(__name__)

# DPM-Solver without thresholding has no x0 clip, so it must not start at t = T-1 ("trailing" spacing): with the
# cosine schedule sigma/alpha is 20,291 at t=999 and its first data prediction multiplies the noise-prediction error
# by it (the bundled sines model gave |x| ~ 1.6e3 at 20 steps). "leading" starts at t=950 (see the tabular
# pipeline's `TABLE_SCHEDULER_KWARGS`, where the same fault was found).
DPM_SOLVER_UNTHRESHOLDED = {"thresholding": False, "timestep_spacing": "leading"}
# for data without a known bound (a z-scored series saved before `bound` existed)
UNCLIPPED = {"ddpm": {"clip_sample": False}, "ddim": {"clip_sample": False}, "dpmsolver": DPM_SOLVER_UNTHRESHOLDED}


def _check_match(denoiser, preprocessor: TimeSeriesPreprocessor) -> None:
    """The denoiser's channels (and window length, when it has one) must match the preprocessor's."""
    channels = getattr(denoiser.config, "in_channels", None)
    if channels != preprocessor.num_channels:
        raise ValueError(
            f"The denoiser has in_channels={channels} but the preprocessor has {preprocessor.num_channels} channels "
            f"{preprocessor.channels}; load the preprocessor saved with this model, or rebuild the denoiser with "
            "in_channels=preprocessor.num_channels and retrain."
        )
    length = getattr(denoiser.config, "sample_size", None)
    if (
        getattr(denoiser.config, "architecture", None) == "transformer"
        and length != preprocessor.config.sequence_length
    ):
        raise ValueError(
            f"The denoiser was built for windows of length {length} but the preprocessor cuts "
            f"{preprocessor.config.sequence_length}; use matching sequence_length/sample_size."
        )


@dataclass
class TimeSeriesXAIPipelineOutput(BaseOutput):
    """
    Output of [`TimeSeriesXAIPipeline`].

    Args:
        series (`np.ndarray` `[N, L, C]`, `list[pd.DataFrame]` or `torch.Tensor` `[N, C, L]`): the generated windows
            in the original units (`"np"`, time-major like TimeGAN's data; `"pd"`, one DataFrame with the channel
            names per series) or in model space (`"pt"`, channels first).
        trace ([`Trace`], *optional*): the per-step record (model space, `[N, C, L]`), when `trace=` was set.
    """

    series: np.ndarray | list[pd.DataFrame] | torch.Tensor
    trace: Trace | None = None


class TimeSeriesXAIPipeline(PreprocessedPipelineMixin, DiffusionPipeline):
    r"""
    Generate fixed-length multivariate time series and optionally trace every denoising step.

    Windows are sampled as `[N, C, L]` in the preprocessor's normalised space by any model with the
    `UNet1DModel` calling convention ([`TimeSeriesDenoiser`] or diffusers' `UNet1DModel`), then mapped back to the
    original units by [`TimeSeriesPreprocessor.inverse_transform`].

    Args:
        denoiser ([`TimeSeriesDenoiser`] or `UNet1DModel`): $\epsilon_\theta(x_t, t)$ over `[B, C, L]`.
        scheduler ([`SchedulerMixin`]): [`DDPMScheduler`], [`DDIMScheduler`] or [`DPMSolverMultistepScheduler`].
        preprocessor ([`TimeSeriesPreprocessor`]): channel names, window length and normalisation statistics.

    Example:

    ```py
    >>> from diffusers_xai.modalities.timeseries.pipeline_timeseries import TimeSeriesXAIPipeline
    >>> pipe = TimeSeriesXAIPipeline.from_pretrained("outputs/sines/pipeline")
    >>> pipe.set_scheduler("ddim")
    >>> out = pipe(num_series=100, num_inference_steps=50)
    >>> out.series.shape  # (100, 24, 5)
    ```
    """

    preprocessor_class = TimeSeriesPreprocessor

    def __init__(self, denoiser: ModelMixin, scheduler: SchedulerMixin, preprocessor: TimeSeriesPreprocessor):
        super().__init__()
        self.register_components(denoiser, scheduler, preprocessor)

    @classmethod
    def scheduler_defaults(cls, name: str, preprocessor: TimeSeriesPreprocessor) -> dict:
        # x0 is clipped to the training data's range in model space (see `TABLE_SCHEDULER_KWARGS` for why an
        # unclipped cosine-schedule DDPM diverges): [-1, 1] for min-max data (the stock DDPM/DDIM default and
        # DPM-Solver's pixel thresholding), [-bound, bound] for z-scores, where DPM-Solver's thresholding is off
        bound = preprocessor.config.bound
        if bound is None:
            return dict(UNCLIPPED.get(name, {}))
        if name in ("ddpm", "ddim"):
            return {"clip_sample": True, "clip_sample_range": float(bound)}
        return {} if preprocessor.config.normalization == "minmax" else dict(DPM_SOLVER_UNTHRESHOLDED)

    check_match = staticmethod(_check_match)

    # ---- what the skeleton ([`XAIPipelineMixin`]) needs ----
    count_name = "num_series"
    output_types = ("np", "pd", "pt")

    @property
    def sample_shape(self) -> tuple[int, int]:
        return tuple(self.preprocessor.sample_shape)

    def latents_error(self, shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
        return f"`latents` have shape {shape}; expected [N, C, L] = {expected}."

    def postprocess(self, x: torch.Tensor, output_type: str, run=None):
        if output_type == "pt":
            return x
        series = self.preprocessor.inverse_transform(x)
        if output_type == "np":
            return series
        return [pd.DataFrame(s, columns=self.preprocessor.channels) for s in series]

    @torch.no_grad()
    def __call__(
        self,
        num_series: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float = 0.0,
        num_inference_steps: int = 1000,
        latents: torch.Tensor | None = None,
        trace: bool | TraceConfig | dict | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> TimeSeriesXAIPipelineOutput | tuple:
        r"""
        Generate windows, optionally recording a [`Trace`].

        Args:
            num_series (`int`, *optional*, defaults to 1): number of windows.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): for reproducible sampling.
            eta (`float`, *optional*, defaults to 0.0): DDIM's $\eta$.
            num_inference_steps (`int`, *optional*, defaults to 1000): between 1 and `num_train_timesteps`.
            latents (`torch.Tensor`, *optional*): $x_T$ `[num_series, C, L]` instead of fresh noise.
            trace (`bool`, `dict` or [`TraceConfig`], *optional*): `True` for the default [`TraceConfig`];
                `TraceConfig(attention=True)` records the transformer's attention over time steps.
            output_type (`str`, *optional*, defaults to `"np"`): `"np"` (`[N, L, C]` original units), `"pd"`
                (list of DataFrames) or `"pt"` (model space `[N, C, L]`).
            return_dict (`bool`, *optional*, defaults to `True`).
            callback_on_step_end, callback_on_step_end_tensor_inputs (*optional*): diffusers' step-end callback
                (a function or `PipelineCallback`) and what it reads (`["latents"]`): [`XAIPipelineMixin.sample`].

        Returns:
            [`TimeSeriesXAIPipelineOutput`] or `tuple` `(series, trace)`.
        """
        self.check_output_type(output_type)
        run = self.sample(
            trace, batch_size=num_series, generator=generator, eta=eta, num_inference_steps=num_inference_steps,
            latents=latents, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        series = self.postprocess(run.final_sample, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (series, run.trace)
        return TimeSeriesXAIPipelineOutput(series=series, trace=run.trace)
