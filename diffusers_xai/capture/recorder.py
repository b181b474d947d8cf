"""`TraceRecorder`: install every capture on a diffusers model for the duration of a `with` block."""

from __future__ import annotations

import logging

import torch

from .config import TraceConfig
from .hooks import ActivationCapture, resolve_module_names
from .processor import CapturingAttnProcessor, find_attention_modules, restore_processors
from .trace import Trace, TraceBudget, TraceStep

__all__ = ["TraceRecorder"]

logger = logging.getLogger(__name__)


class TraceRecorder:
    r"""
    Record a [`Trace`] from any diffusers denoiser (`UNet2DModel`, `UNet2DConditionModel`, our own models).

    On enter it swaps the processor of every selected `Attention` module for a [`CapturingAttnProcessor`],
    registers forward hooks for the traced activations and a forward pre-hook on the model that advances the
    step counter (one denoiser call = one step, reading its `timestep` argument). On exit — also when sampling
    raises — every original processor is restored and every hook removed.

    The denoiser's input ($x_t$, or the doubled batch under classifier-free guidance) and its output are taken
    from the model's own forward hooks, so stock pipelines need nothing else. $\hat{x}_0$ lives in the
    scheduler: our pipelines hand the scheduler's `pred_original_sample` over with [`record_latents`]. A guided run
    of our pipelines sets `rows` to the conditional half of the doubled batch, so its trace holds one row per sample
    (the class's attention and activations, not the null pass's) and hands over the guided model output.

    Example (a stock pipeline):

    ```py
    >>> from diffusers import DDPMPipeline
    >>> pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    >>> with TraceRecorder(pipe.unet, TraceConfig(attention=True), num_steps=10) as rec:
    ...     pipe(num_inference_steps=10, output_type="np")
    >>> rec.trace.attention_layers
    ```
    """

    def __init__(self, model: torch.nn.Module, config: TraceConfig | None = None, num_steps: int | None = None):
        self.model = model
        self.config = config or TraceConfig()
        self.num_steps = num_steps
        self._recorded = self.config.step_indices(num_steps)
        self.trace = Trace(config=self.config, num_inference_steps=num_steps)
        self._budget = TraceBudget(self.trace)
        attn_modules = find_attention_modules(model)
        if self.config.attention:
            if not attn_modules:
                raise ValueError(
                    f"TraceConfig(attention=True) but {type(model).__name__} has no diffusers `Attention` modules; "
                    "build the model with attention blocks (e.g. 'AttnDownBlock2D') or set attention=False."
                )
            layers = self.config.attention_layers
            names = resolve_module_names(attn_modules, layers, "attention layer") if layers else list(attn_modules)
            self._attn_modules = {n: attn_modules[n] for n in names}
        else:
            self._attn_modules = {}
        self._activations = (
            ActivationCapture(model, self.config.activations, on_activation=self._on_activation)
            if self.config.activations
            else None
        )
        self._originals: dict[str, object] = {}
        self._handles: list = []
        self._step_index = -1
        self._current: TraceStep | None = None
        self._warned_budget = False
        self._active = False
        self.rows: slice | None = None  # rows of the denoiser's batch to keep (a guided run: its conditional half)

    # ---- step bookkeeping ----
    def should_record(self, step_index: int | None = None) -> bool:
        step_index = self._step_index if step_index is None else step_index
        if step_index < 0:
            return False
        if self._recorded is not None:
            return step_index in self._recorded
        if isinstance(self.config.steps, int):
            return step_index % self.config.steps == 0
        return True

    @property
    def recording(self) -> bool:
        """Whether the current step is being recorded (and the budget is not exhausted)."""
        return self._active and self._current is not None and not self.trace.truncated

    def _recording_now(self) -> bool:
        return self._active and self.should_record() and not self.trace.truncated

    def begin_step(self, timestep) -> None:
        """Advance to the next step (called by the model's forward pre-hook)."""
        self._step_index += 1
        if self.should_record():
            t = int(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else int(timestep)
            self._current = TraceStep(step_index=self._step_index, timestep=t)
            self.trace.steps.append(self._current)
        else:
            self._current = None

    def _pre_hook(self, module, args, kwargs):
        sample = kwargs.get("sample", args[0] if args else None)
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else -1)
        self.begin_step(timestep)
        if isinstance(sample, torch.Tensor):
            self.record_latents(latents=self._kept(sample))

    def _post_hook(self, module, args, kwargs, output):
        sample = getattr(output, "sample", None)
        if sample is None and isinstance(output, (tuple, list)) and output:
            sample = output[0]
        if isinstance(sample, torch.Tensor):
            self.record_latents(model_output=self._kept(sample))

    def _kept(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.rows is None else tensor[self.rows]

    # ---- storage ----
    def _store(self, tensor: torch.Tensor) -> torch.Tensor | None:
        stored = tensor.detach().to(device=self.config.device, dtype=self.config.dtype)
        if not self._budget.admit(stored):
            if not self._warned_budget:
                logger.warning(
                    "Trace reached its budget of %d bytes at step %d; later steps are not recorded. Raise "
                    "TraceConfig.max_bytes, record fewer steps/layers or use head_reduction='mean'.",
                    self.config.max_bytes,
                    self._step_index,
                )
                self._warned_budget = True
            return None
        return stored

    def _on_attention(self, name: str, probs: torch.Tensor) -> None:
        if self._current is None or self.trace.truncated:
            return
        probs = self._kept(probs)
        if self.config.head_reduction == "mean":
            probs = probs.mean(dim=1)
        stored = self._store(probs)
        if stored is not None:
            self._budget.release(self._current.attentions.get(name))
            self._current.attentions[name] = stored

    def _on_activation(self, name: str, tensor: torch.Tensor) -> None:
        if self._current is None or self.trace.truncated:
            return
        stored = self._store(self._kept(tensor))
        if stored is not None:
            self._budget.release(self._current.activations.get(name))
            self._current.activations[name] = stored

    def record_latents(
        self,
        latents: torch.Tensor | None = None,
        pred_original_sample: torch.Tensor | None = None,
        model_output: torch.Tensor | None = None,
    ) -> None:
        """Attach $x_t$, $\\hat{x}_0$ and the model output to the current step (ignored if it is not recorded)."""
        if self._current is None or self.trace.truncated:
            return
        for field_name, value in (
            ("latents", latents),
            ("pred_original_sample", pred_original_sample),
            ("model_output", model_output),
        ):
            if value is not None and getattr(self.config, field_name):
                # a value replaced (the hook's model output by the guided one) leaves the budget
                self._budget.release(getattr(self._current, field_name))
                setattr(self._current, field_name, None)
                stored = self._store(value)
                if stored is not None:
                    setattr(self._current, field_name, stored)

    # ---- install / remove ----
    def __enter__(self) -> TraceRecorder:
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self._handles.append(self.model.register_forward_hook(self._post_hook, with_kwargs=True))
            for name, module in self._attn_modules.items():
                self._originals[name] = module.get_processor()
                module.set_processor(
                    CapturingAttnProcessor(self._originals[name], name, self._on_attention, self._recording_now)
                )
            if self._activations is not None:
                self._activations.__enter__()
            self._active = True
        except BaseException:
            self.restore()
            raise
        return self

    def restore(self) -> None:
        """Put every original processor back and remove every hook (idempotent)."""
        self._active = False
        restore_processors(self._attn_modules, self._originals, self._handles)
        if self._activations is not None:
            self._activations.remove()

    def __exit__(self, *exc) -> None:
        self.restore()
