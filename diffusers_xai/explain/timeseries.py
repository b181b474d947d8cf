r"""Per-time-step and per-channel explanations of generated time series with the one explainer family: the target
of a region of $\hat{x}_0$ (channels x time steps), and which time steps commit first along the trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..capture import Trace
from .target import ExplanationTarget
from .trajectory import first_settled_steps, recorded_pred_x0

__all__ = ["SeriesCommitResult", "series_commit_steps", "series_target"]


def _index(value, size: int, what: str, names: list[str] | None = None):
    if value is None:
        return slice(None)
    if isinstance(value, str):
        if names is None or value not in names:
            raise ValueError(f"Unknown {what} {value!r}; choose one of {names}.")
        return names.index(value)
    if isinstance(value, slice):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not -size <= value < size:
            raise ValueError(f"{what} index {value} is out of range for size {size}.")
        return value
    raise TypeError(f"The target {what} must be an int, a slice{', a name' if names else ''} or None, got {value!r}.")


def series_target(
    channels: list[str] | int,
    sequence_length: int,
    channel: int | str | slice | None = None,
    time: int | slice | None = None,
    output: Literal["model_contribution", "pred_original_sample", "model_output"] = "model_contribution",
) -> ExplanationTarget:
    r"""
    The [`ExplanationTarget`] of a region of a window (one channel, one time step, a slice, or everything): the sum
    of the selected output over $(c, l) \in R$, as a `[C, L]` mask. With any explainer of the family
    ([`DenoiserAttribution`], [`DenoiserShap`], ...) it answers "which time steps and channels of the noisy series
    made the model predict this".

    Args:
        channels (`list[str]` or `int`): the channel names (`preprocessor.channels`) or their number.
        sequence_length (`int`): the window length L.
        channel (`int`, `str`, `slice`, *optional*): channel(s) of the region; `None` = all.
        time (`int` or `slice`, *optional*): time step(s) of the region; `None` = all.
        output (*optional*, defaults to `"model_contribution"`): what of the model the target reads.

    Example:

    ```py
    >>> target = series_target(pipe.preprocessor.channels, 24, channel="sine_2", time=slice(5, 10))
    >>> DenoiserAttribution(pipe, target=target).attribute(out.trace, timesteps=[int(out.trace.timesteps[25])])
    ```
    """
    names = list(channels) if not isinstance(channels, int) else None
    c = len(names) if names is not None else int(channels)
    mask = torch.zeros(c, sequence_length)
    mask[_index(channel, c, "channel", names), _index(time, sequence_length, "time")] = 1.0
    if mask.sum() == 0:
        raise ValueError(f"The target (channel={channel!r}, time={time!r}) selects nothing.")
    return ExplanationTarget(output=output, mask=mask)


# ---- trajectory ----
@dataclass
class SeriesCommitResult:
    r"""
    What [`series_commit_steps`] returns.

    Args:
        channels (`list[str]`): channel names.
        step_indices (`torch.Tensor` `[B, C, L]`): loop index of the first recorded step from which each element
            of $\hat{x}_0$ stays within `tolerance` of its final value.
        fraction (`torch.Tensor` `[B, C, L]`): the same as a fraction of the run.
        recorded_steps (`list[int]`): loop indices of the recorded steps.
    """

    channels: list[str]
    step_indices: torch.Tensor
    fraction: torch.Tensor
    recorded_steps: list[int]

    def per_time_step(self) -> torch.Tensor:
        """Mean commit fraction of each time step over rows and channels, `[L]`."""
        return self.fraction.mean(dim=(0, 1))


def series_commit_steps(
    trace: Trace, channels: list[str] | None = None, tolerance: float = 0.05
) -> SeriesCommitResult:
    r"""
    When each time step of each channel commits: the first recorded step after which $\hat{x}_0$ stays within
    `tolerance` (in normalised units; [-1, 1] for min-max data) of its final value. Needs `pred_original_sample`
    in the trace (the default `TraceConfig`).
    """
    x0, recorded = recorded_pred_x0(trace, tolerance)  # [S, B, C, L]
    if x0.ndim != 4:
        raise ValueError(f"Expected a time-series trace with [B, C, L] samples, got {tuple(x0.shape[1:])}.")
    step_idx, fraction = first_settled_steps((x0 - x0[-1:]).abs() <= tolerance, recorded, trace.num_inference_steps)
    names = channels or [f"channel_{i}" for i in range(x0.shape[2])]
    return SeriesCommitResult(names, step_idx, fraction, recorded)
