r"""
diffusers' `callback_on_step_end` for this package's pipelines: the same contract as `StableDiffusionPipeline`'s, so
diffusers' `PipelineCallback`s (and [`~diffusers_xai.capture.LatentTraceCallback`]) work on them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from .sampling import DiffusionStep

__all__ = ["step_end_callback"]


def step_end_callback(
    pipeline, callback_on_step_end: Callable | None, tensor_inputs: Sequence[str] | None
) -> Callable[[DiffusionStep], None] | None:
    """
    The `on_step_end(step)` of [`run_progressive`] for a diffusers `callback_on_step_end`: after each scheduler step
    it calls `callback_on_step_end(pipeline, i, t, {name: tensor})` with the named tensors of
    `callback_on_step_end_tensor_inputs` (default `["latents"]`, $x_{t-1}$ in model space; a `PipelineCallback`
    brings its own `tensor_inputs`), and continues from the `"latents"` it returns, if any. Names outside the
    pipeline's `_callback_tensor_inputs` raise `ValueError`, as in diffusers.
    """
    if callback_on_step_end is None:
        return None
    if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
        tensor_inputs = callback_on_step_end.tensor_inputs
    names = list(tensor_inputs) if tensor_inputs is not None else ["latents"]
    allowed = list(pipeline._callback_tensor_inputs)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(
            f"`callback_on_step_end_tensor_inputs` has to be in {allowed}, but found {unknown}; pass names from "
            f"{allowed}."
        )
    if not callable(callback_on_step_end):
        raise ValueError(
            f"`callback_on_step_end` must be callable as `(pipeline, step_index, timestep, callback_kwargs) -> dict`, "
            f"got {type(callback_on_step_end).__name__}."
        )

    def on_step_end(step: DiffusionStep) -> None:
        tensors = {"latents": step.prev_sample}
        outputs = callback_on_step_end(pipeline, step.step_index, step.timestep, {n: tensors[n] for n in names})
        if outputs is not None and not isinstance(outputs, dict):
            raise ValueError(
                f"`callback_on_step_end` returned {type(outputs).__name__} at step {step.step_index}; return a dict "
                "(e.g. `callback_kwargs`, or {} to change nothing)."
            )
        step.prev_sample = (outputs or {}).get("latents", step.prev_sample)

    return on_step_end
