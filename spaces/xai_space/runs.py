"""The steps every tab's handlers repeat: load and sample with a trace, keep the state, write explanations, reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffusers_xai import Trace, TraceConfig

from .common import (
    MAX_SEED,
    MODEL_LOCK,
    TRACE_MAX_BYTES,
    TRACE_MAX_STEPS,
    check_int,
    check_steps,
    check_work,
    generation_info,
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


def sample_traced(pipe, seed: int | list[int], num_inference_steps: int, attention: bool = False, **kwargs):
    """`pipe(**kwargs)` under `MODEL_LOCK` from a CPU generator seeded with `seed` (a list: one generator per
    sample), recording a trace within the Space's bounds (`attention=True` also records the attention
    probabilities)."""
    trace = TraceConfig(attention=attention, max_recorded_steps=TRACE_MAX_STEPS, max_bytes=TRACE_MAX_BYTES)
    if isinstance(seed, list):
        generator = [torch.Generator("cpu").manual_seed(s) for s in seed]
    else:
        generator = torch.Generator("cpu").manual_seed(seed)
    with MODEL_LOCK:
        return pipe(
            generator=generator,
            num_inference_steps=num_inference_steps,
            trace=trace,
            **kwargs,
        )


@dataclass(frozen=True)
class BatchLimits:
    """A tab's batch: its name in the Generate slider and the input checks ("Rows"), its largest value, the tab's
    work budget (steps x batch, `common.check_work`) and its noun in the generation summary ("row(s)")."""

    label: str
    maximum: int
    max_work: int
    noun: str


@dataclass
class TracedRun:
    """What [`traced_generation`] returns: the pipeline, its output (with the trace), the checked step count, seed
    and batch size, and the generation summary."""

    pipe: Any
    output: Any
    steps: int
    seed: int
    count: int
    info: str


def traced_generation(
    load: Callable,
    model: str | None,
    scheduler: str,
    num_inference_steps,
    seed,
    count,
    progress,
    batch: BatchLimits,
    call_kwargs: Callable[[Any, int], dict],
    attention: bool = False,
    sample_seeds: Callable[[Any, int, int, int], int | list[int]] | None = None,
) -> TracedRun:
    """What every tab's Generate runs before showing the result: the seed and the batch size checked, the pipeline
    `load(model)` with its own `scheduler` and the checked step count, the work (steps x batch) checked before any
    model runs, then one traced run of `pipe(**call_kwargs(pipe, count))` (see [`sample_traced`]).
    `sample_seeds(pipe, steps, seed, count)`, when given, chooses that run's seed, or one seed per sample (rows with
    given values: the seed of each row's first draw that holds them)."""
    seed = check_int("Seed", seed, 0, MAX_SEED)
    count = check_int(batch.label, count, 1, batch.maximum)
    pipe, steps = sampling_pipeline(load, model, scheduler, num_inference_steps, progress)
    check_work(batch.label, steps, count, batch.max_work)
    seeds = seed if sample_seeds is None else sample_seeds(pipe, steps, seed, count)
    out = sample_traced(pipe, seeds, steps, attention=attention, **call_kwargs(pipe, count))
    info = generation_info(f"{count} {batch.noun}", scheduler, steps, seed, out.trace)
    return TracedRun(pipe, out, steps, seed, count, info)


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
