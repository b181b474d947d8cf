r"""Per-sample explanation summaries computed from a sampling [`Trace`]: a few scalars per generated sample.

- `attention_entropy`: mean normalised entropy $H(p)/\log K$ of the (head-averaged) attention distributions over
  the keys, averaged over queries, recorded layers and recorded steps. 1 = uniform attention, 0 = one key.
- `commit_step`: the first recorded loop step from which every element of $\hat{x}_0$ stays within `eps` of the
  final $\hat{x}_0$ until the end (`num_inference_steps` if it never does), from the explainers'
  [`commit_steps`]. `commit_fraction` is the same as a fraction of the run.
"""

from __future__ import annotations

import logging
import math

import datasets
import torch

from ..capture import Trace, TraceConfig
from ..explain.trajectory import commit_steps

__all__ = [
    "SUMMARY_FEATURES",
    "attention_entropy",
    "explanation_summaries",
    "sample_commit_steps",
    "summary_trace_config",
]

logger = logging.getLogger(__name__)


def summary_trace_config(attention: bool, max_recorded_steps: int = 50) -> TraceConfig:
    """
    What [`explanation_summaries`] needs: $\\hat{x}_0$ (and attention when the model has it) at up to
    `max_recorded_steps` evenly spaced steps, stored in float32 (commit tolerances are compared in data units).
    """
    return TraceConfig(
        steps="auto",
        max_recorded_steps=max_recorded_steps,
        latents=False,
        pred_original_sample=True,
        attention=attention,
        head_reduction="mean",
        dtype=torch.float32,
        max_bytes=1024 * 2**20,
    )


def attention_entropy(trace: Trace) -> torch.Tensor:
    r"""
    Mean normalised attention entropy per sample, `[B]` (see the module docstring).

    Args:
        trace ([`Trace`]): with attention recorded (`[B, Q, K]` head-averaged or `[B, heads, Q, K]` maps).
    """
    values = []
    for step in trace.steps:
        for probs in step.attentions.values():
            p = probs.float().clamp_min(1e-12)
            num_keys = p.shape[-1]
            entropy = -(p * p.log()).sum(dim=-1) / math.log(num_keys) if num_keys > 1 else torch.zeros(p.shape[:-1])
            values.append(entropy.flatten(1).mean(dim=1))
    if not values:
        raise ValueError("The trace holds no attention maps: record it with TraceConfig(attention=True).")
    return torch.stack(values).mean(dim=0)


def sample_commit_steps(trace: Trace, eps: float = 0.1) -> torch.Tensor:
    r"""
    Per sample, the first recorded step from which all of $\hat{x}_0$ stays within `eps` of the final $\hat{x}_0$,
    `[B]` long (`num_inference_steps` if it never settles). Works for images, rows and series alike.
    """
    x0 = trace.stack("pred_original_sample").float()  # [S, B, ...]
    num_steps, batch = x0.shape[:2]
    flat = x0.reshape(num_steps, batch, -1, 1, 1)  # every element as a "channel" of one pixel
    never = trace.num_inference_steps if trace.num_inference_steps is not None else trace.step_indices[-1] + 1
    return commit_steps(flat, flat[-1], trace.step_indices, float(eps), never).reshape(batch)


SUMMARY_FEATURES = {
    "attention_entropy": datasets.Value("float32"),
    "commit_step": datasets.Value("int32"),
    "commit_fraction": datasets.Value("float32"),
}


def explanation_summaries(trace: Trace, eps: float = 0.1) -> dict[str, list]:
    """
    Dataset columns of per-sample summaries: `commit_step`, `commit_fraction` and, when the trace holds attention,
    `attention_entropy`.
    """
    if trace.truncated:
        logger.warning(
            "The summary trace hit its memory budget; summaries use the steps recorded before it. Lower the "
            "generation batch_size for exact summaries."
        )
    commit = sample_commit_steps(trace, eps)
    total = trace.num_inference_steps or (trace.step_indices[-1] + 1)
    out = {
        "commit_step": commit.tolist(),
        "commit_fraction": (commit.float() / total).tolist(),
    }
    if trace.attention_layers:
        out["attention_entropy"] = attention_entropy(trace).tolist()
    return out
