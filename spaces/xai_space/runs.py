"""The steps every tab's handlers repeat: load and sample with a trace, keep the state, write explanations, reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from diffusers_xai import Trace, TraceConfig

from .common import (
    MODEL_LOCK,
    TRACE_MAX_BYTES,
    TRACE_MAX_STEPS,
    check_steps,
    new_output_path,
    report_markdown,
    save_tensors,
    save_text,
    with_scheduler,
    zip_folder,
)


def sampling_pipeline(load: Callable, model: str | None, scheduler: str, num_inference_steps, progress):
    """`(pipeline, steps)`: the cached pipeline `load(model)` with its own `scheduler`, and the checked step count."""
    progress(0, desc="Loading the model")
    pipe = with_scheduler(load(model), scheduler)
    return pipe, check_steps(pipe, num_inference_steps)


def sample_traced(pipe, seed: int, num_inference_steps: int, attention: bool = False, **kwargs):
    """`pipe(**kwargs)` under `MODEL_LOCK` from a CPU generator seeded with `seed`, recording a trace within the
    Space's bounds (`attention=True` also records the attention probabilities)."""
    trace = TraceConfig(attention=attention, max_recorded_steps=TRACE_MAX_STEPS, max_bytes=TRACE_MAX_BYTES)
    with MODEL_LOCK:
        return pipe(
            generator=torch.Generator("cpu").manual_seed(seed),
            num_inference_steps=num_inference_steps,
            trace=trace,
            **kwargs,
        )


def generation_state(trace: Trace, prefix: str, source: str, scheduler: str, num_inference_steps: int, **extra):
    """The visitor's state after Generate: the trace saved as `{prefix}-….safetensors`, the model, the scheduler,
    the steps and `extra` (paths of the saved outputs); every other handler starts from it."""
    return {
        "trace_path": str(trace.save(new_output_path(prefix, ".safetensors"))),
        "model": source,
        "scheduler": scheduler,
        "num_inference_steps": num_inference_steps,
        **extra,
    }


def save_attributions(folder: Path, numbers: dict, attributions: torch.Tensor) -> str:
    """Write `attributions.json` and `attributions.safetensors` into `folder` (which holds the plot already) and
    return the path of the folder zipped."""
    save_text(json.dumps(numbers, indent=2), folder / "attributions.json")
    save_tensors({"attributions": attributions}, folder / "attributions.safetensors")
    return str(zip_folder(folder))


def quality_results(report, folder: Path, plots: Sequence[str] = ("scores",)) -> tuple:
    """Save an `EvaluationReport` into `folder` and return what a Quality section shows: its Markdown summary, the
    paths of the `plots` artifacts (`None` when missing), the report as a dict and the zipped folder."""
    report.save(folder / "report.json")
    paths = [report.artifacts.get(k) for k in plots]
    return (
        report_markdown(report),
        *[str(p) if p else None for p in paths],
        report.to_dict(),
        str(zip_folder(folder)),
    )
