r"""
The one pipeline skeleton every modality's pipeline is built on.

A modality's pipeline is a `DiffusionPipeline` that mixes in [`XAIPipelineMixin`] and says only what differs:
`sample_shape` (one sample's shape), the name of its denoiser component and of its sample count, the output types
it accepts, `postprocess` (model space → what users get), and optionally `prepare_conditioning` (model keyword
arguments such as `class_labels`, drawn before $x_T$) and `check_components`. The rest -- input checks, $x_T$,
the reverse process as a generator (`progressive`, as improved-diffusion's `p_sample_loop_progressive`), tracing and
the progress bar -- is written once here, so `__call__` only drains `progressive()` and wraps the result.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..capture import Trace, TraceConfig, TraceRecorder, resolve_trace_config
from .callbacks import step_end_callback
from .guidance import ClassifierFreeGuidance
from .sampling import DiffusionStep, check_sampling_args, denoise_progressive, prepare_latents, run_progressive
from .schedulers import make_scheduler, noise_schedule

__all__ = [
    "PreprocessedPipelineMixin",
    "SamplingRun",
    "SavedPipelineMismatchError",
    "XAIPipelineMixin",
    "read_model_index",
]


def read_model_index(folder) -> dict | None:
    """A local pipeline folder's `model_index.json`, `None` for a Hub id, a folder without one or one that is not a
    JSON object (`from_pretrained` then raises its own error)."""
    import json

    if not isinstance(folder, (str, os.PathLike)):
        return None
    try:
        with open(os.path.join(os.fspath(folder), "model_index.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


class SavedPipelineMismatchError(ValueError):
    """A folder saved by another pipeline class than the one loading it (`saved_class`: its `_class_name`)."""

    def __init__(self, message: str, saved_class: str | None):
        super().__init__(message)
        self.saved_class = saved_class


@dataclass
class SamplingRun:
    r"""
    What one call samples from: $x_T$ (`sample`), the model keyword arguments of every step (`model_kwargs`, e.g.
    `{"class_labels": ...}`), the generator and DDIM's $\eta$; after `XAIPipelineMixin.sample`, also $x_0$
    (`final_sample`, model space) and the trace.
    """

    sample: torch.Tensor
    generator: Any = None
    eta: float = 0.0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    final_sample: torch.Tensor | None = None
    trace: Trace | None = None


class XAIPipelineMixin:
    """
    Skeleton of a traced diffusion pipeline (mix into a `DiffusionPipeline` subclass, before it).

    Class attributes:
        denoiser_name (`str`): the registered component that denoises (`"unet"` for images, `"denoiser"` otherwise).
        count_name (`str`): how `__call__` names the number of samples (`"batch_size"`, `"num_rows"`, ...), used in
            error messages.
        output_types (`tuple[str, ...]`): the `output_type` values `postprocess` accepts.
    """

    denoiser_name: ClassVar[str] = "denoiser"
    count_name: ClassVar[str] = "batch_size"
    output_types: ClassVar[tuple[str, ...]] = ("pt",)
    _callback_tensor_inputs: ClassVar[list[str]] = ["latents"]  # what `callback_on_step_end` may read and replace

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """`DiffusionPipeline.from_pretrained`, after checking that a local folder holds the components this class
        takes ([`check_saved_components`])."""
        cls.check_saved_components(pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def check_saved_components(cls, pretrained_model_name_or_path, kwargs: dict) -> None:
        """
        [`SavedPipelineMismatchError`] (a `ValueError`) naming the class to load with when a local folder's
        `model_index.json` was saved by another diffusers-xai pipeline, or lacks a component this class needs: a
        table's folder loaded with `DiffusionXAIPipeline` failed inside diffusers with "expected ['scheduler',
        'unet'], but only {'scheduler'} were passed", after two warnings about unexpected config attributes. Hub
        ids and folders without a `model_index.json` are left to `from_pretrained` (and its own errors).
        """
        from ..modalities import modality_of

        config = read_model_index(pretrained_model_name_or_path)
        if config is None:
            return
        saved = config.get("_class_name")
        expected, _ = cls._get_signature_keys(cls)
        missing = set(expected) - set(config) - set(kwargs)
        try:
            ours = modality_of(saved).pipeline_class if isinstance(saved, str) else None
        except ValueError:  # not a registered modality's pipeline
            ours = None
        if not missing and not (ours and not issubclass(cls, ours)):
            return
        present = sorted(k for k, v in config.items() if not k.startswith("_") and isinstance(v, list))
        fix = (
            f"load it with {saved}.from_pretrained"
            if ours
            else "load it with its own class, or with diffusers_xai.generation.load_pipeline, which reads the class"
        )
        why = f"it needs {sorted(expected)}, the folder has {present}" if missing else "another modality's pipeline"
        where = str(pretrained_model_name_or_path)
        raise SavedPipelineMismatchError(
            f"{where!r} holds a {saved}, which {cls.__name__} cannot load ({why}): {fix}.", saved
        )

    @property
    def num_timesteps(self) -> int:
        """Steps of the current (or last) call, as diffusers' pipelines expose it to `PipelineCallback`s."""
        return getattr(self, "_num_timesteps", 0)

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` (e.g. in a `callback_on_step_end`) to stop sampling after the current step:
        the call returns what the steps so far made, as diffusers' pipelines do."""
        return getattr(self, "_interrupt", False)

    @property
    def denoiser_model(self) -> torch.nn.Module:
        """The denoising network (the component named `denoiser_name`)."""
        return getattr(self, self.denoiser_name)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample in model space (`[C, H, W]`, `[F]`, `[C, L]`)."""
        raise NotImplementedError(f"{type(self).__name__} must define `sample_shape`.")

    def scheduler_for(self, name: str, **kwargs) -> SchedulerMixin:
        """A new scheduler by name (`"ddpm"`, `"ddim"`, `"dpmsolver"`) with the noise schedule (betas, prediction
        type: [`noise_schedule`]) of the current one and nothing else (no sampler setting made by hand), `kwargs` on
        top; a modality adds its data's defaults (clipping) by overriding this."""
        return make_scheduler(name, noise_schedule(self.scheduler.config), **kwargs)

    def set_scheduler(self, name: str, **kwargs) -> None:
        """Replace the scheduler by [`scheduler_for`]`(name, **kwargs)`."""
        self.scheduler = self.scheduler_for(name, **kwargs)

    def with_scheduler(self, name: str, **kwargs):
        """A copy of this pipeline under [`scheduler_for`]`(name, **kwargs)`: the same components (no weights are
        copied) and constructor settings (e.g. `class_names`), this pipeline left as it is. The copy is built with its
        new scheduler, so the constructor never checks (or warns about) the scheduler it replaces."""
        # hand-written instead of diffusers' `from_pipe`, which re-casts every module and logs about it on each call
        settings = inspect.signature(type(self).__init__).parameters.keys() - self.components.keys() - {"self"}
        config = {key: self.config[key] for key in settings if key in self.config}
        return type(self)(**{**self.components, **config, "scheduler": self.scheduler_for(name, **kwargs)})

    # ---- input checks ----
    def check_components(self) -> None:
        """Raise `ValueError` if the components do not fit each other (e.g. denoiser width vs preprocessor)."""

    def check_inputs(self, batch_size, num_inference_steps, generator, latents) -> None:
        """The sampling arguments, the components, and `latents` against `[batch_size, *sample_shape]`."""
        check_sampling_args(self.scheduler, batch_size, num_inference_steps, generator, self.count_name)
        self.check_components()
        expected = (batch_size, *self.sample_shape)
        if latents is not None and tuple(latents.shape) != expected:
            raise ValueError(self.latents_error(tuple(latents.shape), expected))

    def latents_error(self, shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
        """The message for `latents` of the wrong shape (a modality may name what fixes it)."""
        return (
            f"`latents` have shape {shape} but this {type(self).__name__} samples [{self.count_name}, *sample_shape] "
            f"= {expected}; pass latents of that shape."
        )

    def check_output_type(self, output_type: str) -> None:
        if output_type not in self.output_types:
            quoted = [repr(t) for t in self.output_types]
            choices = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
            raise ValueError(f"`output_type` must be {choices}, got {output_type!r}.")

    # ---- sampling ----
    def prepare_conditioning(self, batch_size: int, generator=None, **conditioning) -> dict[str, Any]:
        """The model keyword arguments of every step (e.g. `{"class_labels": [B] long}`), from the call's
        conditioning arguments; drawn after the input checks and before $x_T$. Unconditional by default."""
        if conditioning:
            raise TypeError(f"{type(self).__name__} takes no conditioning arguments, got {sorted(conditioning)}.")
        return {}

    def prepare(
        self, batch_size, generator=None, eta=0.0, num_inference_steps=1000, latents=None, **conditioning
    ) -> SamplingRun:
        r"""Check the inputs, draw the conditioning, set the scheduler's timesteps and draw $x_T$."""
        self.check_inputs(batch_size, num_inference_steps, generator, latents)
        model_kwargs = self.prepare_conditioning(batch_size, generator, **conditioning)
        self.scheduler.set_timesteps(num_inference_steps)
        shape = (batch_size, *self.sample_shape)
        device, dtype = self._execution_device, self.denoiser_model.dtype
        x = prepare_latents(self.scheduler, shape, generator, device, dtype, latents)
        return SamplingRun(sample=x, generator=generator, eta=eta, model_kwargs=model_kwargs)

    @property
    def null_class_label(self) -> int | None:
        """The label of the null (unconditional) class $K$ that classifier-free guidance contrasts with, `None` when
        the denoiser has none (see [`~diffusers_xai.pipelines.guidance`])."""
        return None

    def denoise(self, run: SamplingRun, recorder: TraceRecorder | None = None) -> Iterator[DiffusionStep]:
        r"""The reverse process from `run.sample` over the timesteps `prepare` set (one [`DiffusionStep`] a step),
        through [`ClassifierFreeGuidance`] when `prepare_conditioning` put a `"guidance_scale"` above 1 among the
        model keyword arguments."""
        model_kwargs = dict(run.model_kwargs)
        scale = model_kwargs.pop("guidance_scale", 1.0)
        model = self.denoiser_model
        if scale != 1:
            model = ClassifierFreeGuidance(model, self.null_class_label, scale)
            if recorder is not None:  # the trace keeps the conditional half of [null; y] (one row per sample)
                recorder.rows = slice(run.sample.shape[0], None)
                recorder.trace.guidance_scale = float(scale)
        return denoise_progressive(model, self.scheduler, run.sample, run.generator, run.eta, model_kwargs, recorder)

    @torch.no_grad()
    def progressive(self, recorder: TraceRecorder | None = None, **kwargs) -> Iterator[DiffusionStep]:
        r"""
        Sample step by step, yielding a [`DiffusionStep`] after every scheduler step (improved-diffusion's
        `p_sample_loop_progressive`); `sample` is $x_t$ in model space. Runs under `torch.no_grad()`. `kwargs` are
        [`prepare`]'s: the sampling arguments of `__call__` (`batch_size`, `generator`, `eta`, `num_inference_steps`,
        `latents`) and its conditioning (e.g. `class_labels`); `recorder` is passed to [`denoise`].
        """
        yield from self.denoise(self.prepare(**kwargs), recorder)

    def sample(
        self,
        trace: bool | TraceConfig | dict | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
        **kwargs,
    ) -> SamplingRun:
        """
        What every `__call__` does before wrapping its output: [`prepare`] with `kwargs`, then drain
        [`denoise`] under the progress bar with a [`TraceRecorder`] open when `trace` is set and diffusers'
        `callback_on_step_end` called after every step ([`step_end_callback`]). Returns the run with `final_sample`
        ($x_0$, model space) and `trace`.

        `callback_on_step_end` (a function or diffusers `PipelineCallback`) is called as in diffusers' pipelines,
        `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)`, with the tensors named by
        `callback_on_step_end_tensor_inputs` (default `["latents"]`: $x_{t-1}$ in model space); returning
        `{"latents": ...}` replaces $x_{t-1}$, and `pipe._interrupt = True` stops after the step.
        """
        config = resolve_trace_config(trace)
        on_step_end = step_end_callback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        run = self.prepare(**kwargs)
        self._num_timesteps, self._interrupt = len(self.scheduler.timesteps), False
        progressive = partial(self.denoise, run)
        run.final_sample, run.trace = run_progressive(self, self.denoiser_model, config, progressive, on_step_end)
        return run

    def postprocess(self, sample: torch.Tensor, output_type: str, run: SamplingRun | None = None):
        """Model-space samples → the `output_type` users get."""
        return sample


class PreprocessedPipelineMixin(XAIPipelineMixin):
    """
    [`XAIPipelineMixin`] for pipelines of a `denoiser`, a `scheduler` and a fitted `preprocessor` that maps model
    space back to the data (tables, time series): the constructor's checks (`register_components`), the scheduler
    defaults of the data (x0 clipping) applied by `from_denoiser` and `scheduler_for`, and the component check.

    Subclasses set `preprocessor_class` and define `check_match(denoiser, preprocessor)` (raise `ValueError` when
    they do not fit) and `scheduler_defaults(name, preprocessor)`.
    """

    preprocessor_class: ClassVar[type]
    model_cpu_offload_seq = "denoiser"

    def register_components(self, denoiser, scheduler, preprocessor) -> None:
        """Check the components' types and fit, then register them (what the subclass's `__init__` calls)."""
        if not isinstance(scheduler, SchedulerMixin):
            raise TypeError(f"`scheduler` must be a diffusers scheduler, got {type(scheduler).__name__}.")
        if not isinstance(preprocessor, self.preprocessor_class):
            raise TypeError(
                f"`preprocessor` must be a {self.preprocessor_class.__name__}, got {type(preprocessor).__name__}."
            )
        self.check_match(denoiser, preprocessor)
        self.register_modules(denoiser=denoiser, scheduler=scheduler, preprocessor=preprocessor)

    @staticmethod
    def check_match(denoiser, preprocessor) -> None:
        """Raise `ValueError` if `denoiser` was not built for `preprocessor`'s data."""

    def check_components(self) -> None:
        self.check_match(self.denoiser, self.preprocessor)

    @classmethod
    def scheduler_defaults(cls, name: str, preprocessor) -> dict[str, Any]:
        """The keyword arguments of the scheduler `name` for data of `preprocessor` (x0 clipping)."""
        return {}

    @classmethod
    def from_denoiser(cls, denoiser, preprocessor, scheduler: str = "ddpm", **scheduler_kwargs):
        """A pipeline from a denoiser, a fitted preprocessor and a scheduler name, under the data's scheduler
        defaults (`scheduler_kwargs` on top)."""
        kwargs = {**cls.scheduler_defaults(scheduler, preprocessor), **scheduler_kwargs}
        return cls(denoiser=denoiser, scheduler=make_scheduler(scheduler, **kwargs), preprocessor=preprocessor)

    def scheduler_for(self, name: str, **kwargs) -> SchedulerMixin:
        """A new scheduler by name with the current noise schedule ([`noise_schedule`]) and nothing else, under the
        data's scheduler defaults unless `kwargs` say otherwise."""
        return super().scheduler_for(name, **{**self.scheduler_defaults(name, self.preprocessor), **kwargs})
