"""The main job on the embedded data: train on scikit-learn's digits, sample with a trace, explain, evaluate.

Everything goes through the public machinery (the one training loop in `diffusers_xai.training`, the pipeline,
the explainers and the evaluation suite): this module only chooses the digits settings and writes the folder.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .capture import TraceConfig
from .modalities.image.data import load_digits_tensors
from .training import digits_config, train
from .training.finish import RunSummary, write_card
from .utils.io import atomic_write
from .viz import save_attention_maps, save_image_grid, save_trajectory_strip

__all__ = ["run_quickstart"]

logger = logging.getLogger(__name__)


def _write_json(path: Path, payload: dict) -> Path:
    return atomic_write(path, json.dumps(payload, indent=2, default=str))


def _class_grid(pipe, path: Path, seed: int, per_class: int = 8, guidance_scale: float = 3.0) -> dict:
    """`classes.png`: one row per class of a class-conditional pipeline (guided DPM-Solver, 20 steps); `{}` if the
    model is unconditional."""
    if pipe.num_classes is None:
        return {}
    sampler = pipe.with_scheduler("dpmsolver")  # the noise schedule only (and DPM-Solver's pixel defaults)
    sampler.set_progress_bar_config(disable=True)
    labels = torch.arange(pipe.num_classes).repeat_interleave(per_class)
    images = sampler(
        batch_size=len(labels),
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=20,
        class_labels=labels,
        guidance_scale=guidance_scale,
        output_type="pt",
    ).images
    titles = [pipe.class_names[k] if i % per_class == 0 else "" for i, k in enumerate(labels.tolist())]
    return {"classes": save_image_grid(images, path, nrow=per_class, titles=titles, value_range=(0, 1))}


def run_quickstart(
    output_dir: str | os.PathLike = "outputs/quickstart",
    max_train_steps: int = 1200,
    max_train_minutes: float | None = 6.0,
    num_samples: int = 16,
    num_inference_steps: int = 50,
    scheduler: str = "ddim",
    seed: int = 0,
    explain: bool = True,
    evaluate: bool = True,
    num_eval_samples: int = 256,
    resume: bool = False,
    explain_methods: Sequence[str] | None = None,
) -> dict:
    """
    Train, sample with a trace, explain and evaluate; write everything into `output_dir` and return the summary.

    Writes `samples.png`, `classes.png` (class-conditional models: one row per class, guidance 3), `trajectory.png`
    (x_t and predicted x0 across steps), `attention.png`, `trace.safetensors`, `pipeline/` (the saved
    `DiffusionXAIPipeline`), `training/` (checkpoints, tensorboard logs, validation grids), `explanations/` (one PNG
    per method + `explanations.json`), `evaluation/` and `summary.json`. `explain_methods` defaults to
    [`DEFAULT_METHODS`]: the trajectory plus the map methods that passed their checks; every method's verdict is on
    the card either way.
    """
    out = Path(output_dir)
    if not isinstance(num_samples, int) or not 1 <= num_samples <= 256:
        raise ValueError(f"`num_samples` must be an int in [1, 256], got {num_samples!r}.")
    config = digits_config(
        output_dir=str(out / "training"),
        max_train_steps=max_train_steps,
        max_train_minutes=max_train_minutes,
        seed=seed,
        resume_from_checkpoint="latest" if resume else None,
        # the quickstart explains and evaluates below with more methods, then writes the card into pipeline/
        eval_samples=None,
        explanation_card=False,
    )
    out.mkdir(parents=True, exist_ok=True)  # only after every input is checked
    # 1. train (the same loop as `accelerate launch train/train_ddpm.py`)
    result = train(config)
    pipe = result.pipeline
    pipe.save_pretrained(out / "pipeline")
    pipe.set_scheduler(scheduler)
    pipe.set_progress_bar_config(desc="sampling")
    # 2. sample with a trace: latents and predicted x0 at every step, attention maps of every layer
    generation, files, sampling = _sample_with_trace(pipe, out, num_samples, num_inference_steps, seed)
    summary: dict = {
        "pipeline": str(out / "pipeline"),
        "training": _training_summary(result, config),
        "sampling": sampling,
        "files": {k: str(v) for k, v in files.items()},
    }
    # 3. explain one generated sample with every method (faithfulness + sanity check included)
    explanation, report, methods = None, None, ()
    if explain:
        explanation, methods = _explain(pipe, generation, out, files["samples"], summary, explain_methods)
    # 4. evaluate a larger batch against the real digits (digits-CNN features, honest metric names)
    if evaluate:
        report = _evaluate(pipe, out, num_eval_samples, num_inference_steps, seed)
        summary["evaluation"] = report.to_dict()
    # 5. the explanation card in pipeline/, ready for `diffusers-xai push outputs/quickstart/pipeline --repo-id ...`
    run = RunSummary(
        global_step=result.global_step,
        final_loss=result.loss_history[-1] if result.loss_history else None,
        num_processes=1,
        train_seconds=result.train_seconds,
        stop_reason=result.stop_reason,
    )
    write_card(out / "pipeline", out / "pipeline", config, run, report, explanation, methods)
    summary["files"]["card"] = str(out / "pipeline" / "README.md")
    _write_json(out / "summary.json", summary)
    return summary


def _sample_with_trace(pipe, out: Path, num_samples: int, num_inference_steps: int, seed: int):
    """One traced generation (every step, attention included) and its PNGs and trace file; returns
    `(generation, files, sampling summary)`."""
    start = time.perf_counter()
    generation = pipe(
        batch_size=num_samples,
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=num_inference_steps,
        trace=TraceConfig(steps="all", attention=True),
        output_type="pt",
    )
    sampling_seconds = time.perf_counter() - start
    trace = generation.trace
    files = {
        "samples": save_image_grid(generation.images, out / "samples.png", value_range=(0, 1)),
        **_class_grid(pipe, out / "classes.png", seed),
        "trajectory": save_trajectory_strip(trace, out / "trajectory.png"),
        "attention": save_attention_maps(trace, out / "attention.png"),
        "trace": trace.save(out / "trace.safetensors"),
        "pipeline": out / "pipeline",
    }
    sampling = {
        "scheduler": type(pipe.scheduler).__name__,
        "num_inference_steps": num_inference_steps,
        "num_samples": num_samples,
        "seed": seed,
        "seconds": round(sampling_seconds, 2),
        "trace_bytes": trace.nbytes,
        "attention_layers": trace.attention_layers,
    }
    return generation, files, sampling


def _training_summary(result, config) -> dict:
    return {
        "global_step": result.global_step,
        "stop_reason": result.stop_reason,
        "train_seconds": round(result.train_seconds, 1),
        "final_loss": result.loss_history[-1] if result.loss_history else None,
        "config": config.to_dict(),
    }


def _explain(pipe, generation, out: Path, samples_png, summary: dict, methods: Sequence[str] | None):
    """The explainers on sample 0 (into `summary["explanations"]`); returns the card fields and the methods."""
    from .explain import DEFAULT_METHODS
    from .modalities.explanations import explain_generation
    from .modalities.image.modality import card_fields_from_summary

    methods = tuple(DEFAULT_METHODS if methods is None else methods)
    summary["explanations"] = explain_generation(
        pipe, generation, out / "explanations", methods=methods, sample_index=0
    )
    return card_fields_from_summary(summary["explanations"], out / "explanations", samples_png), methods


def _evaluate(pipe, out: Path, num_eval_samples: int, num_inference_steps: int, seed: int):
    """`num_eval_samples` fresh digits (seed + 1) against the real ones; a class-conditional model is scored on the
    digits 0-9 in turn (its null-class samples beside) and on its class accuracy, see [`score_generated_images`]."""
    from .modalities.image.modality import add_class_accuracy, cycling_class_labels, score_generated_images

    def draw(conditional: bool) -> torch.Tensor:
        labels = cycling_class_labels(pipe.num_classes, 0, num_eval_samples) if conditional else None
        return pipe(
            batch_size=num_eval_samples,
            generator=torch.Generator().manual_seed(seed + 1),
            num_inference_steps=num_inference_steps,
            class_labels=labels,
            output_type="pt",
        ).images

    real, _ = load_digits_tensors(16)
    report = score_generated_images(
        pipe, real, draw, output_dir=out / "evaluation", dataset_name="sklearn-digits", seed=0
    )
    if pipe.num_classes is not None:  # are guided samples of the asked digit? (target >= 90% at guidance 3)
        add_class_accuracy(report, pipe, per_class=max(1, num_eval_samples // pipe.num_classes), seed=seed)
    return report
