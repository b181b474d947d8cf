"""After the last step: evaluate (`eval_samples`), explain one generation, write the explanation card, push.

The card is the same explanation card `publish()` and `diffusers-xai push` write (our Jinja template rendered into
a `huggingface_hub.ModelCard`), so a checkpoint pushed by `train/train_ddpm.py --push_to_hub` carries its sample
grid, explanation figures, faithfulness and sanity-check numbers, memorisation check and model-index results.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..hub import ExplanationCardData, community_pipeline_file, save_explanation_card, summarize_pipeline
from ..modalities.sampling import sampling_steps
from ..utils.io import atomic_write
from .publishing import push_run

__all__ = ["RunSummary", "build_card_data", "early_stopping_line", "finish_run", "write_card"]

logger = logging.getLogger(__name__)

# report metric keys that belong in the card's memorisation section (rather than only in the model-index)
MEMORIZATION_KEYS = re.compile(r"^(memorized_fraction|nn_distance|dcr|exact_copy)")
_HUB_DATASET_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CONFIG_FILE = "training_config.yaml"
REPRODUCE = """The run's configuration is [`{config}`]({config}) in this repo (it holds no token). Retrain with

```bash
accelerate launch train/train_ddpm.py --config {config}
```
"""
FIGURES = """
The figures explain one DDIM generation ({steps} steps, seed {seed}) of the final (EMA) weights with
{methods} (`Modality.explain` in `diffusers_xai.modalities`); evaluation samples are drawn from seed {seed} + 1."""


@dataclass
class RunSummary:
    """What the card says about the run itself; `early_stopping_history` holds the `(step, value)` of each
    early-stopping check (the tabular DCR guard's lower bounds) and `restored_step` the step whose weights were saved
    when a check failed."""

    global_step: int
    final_loss: float | None
    num_processes: int
    train_seconds: float
    stop_reason: str
    early_stopping_history: list[tuple[int, float]] = field(default_factory=list)
    restored_step: int | None = None


def early_stopping_line(history: list[tuple[int, float]], stop_reason: str, restored_step: int | None) -> str | None:
    """
    A run's early-stopping checks in one line (`None` without checks), for the card and the end of `train`'s
    output. Every check but a failing last one passed: the run stops at the first failure.
    """
    if not history:
        return None
    count = f"{len(history)} check(s) from update {history[0][0]:,} to {history[-1][0]:,}"
    if stop_reason != "early_stopping":
        step, value = min(history, key=lambda check: check[1])
        return f"{count}, all passed (lowest {value:.3f} at update {step:,})"
    step, value = history[-1]
    kept = dict(history).get(restored_step)
    saved = (
        f"the weights of update {restored_step:,} ({kept:.3f}) are saved"
        if restored_step is not None and kept is not None
        else "no check passed: the weights of this update are saved"
    )
    return f"{count}; update {step:,} failed ({value:.3f}): {saved}"


def _training_section(config, run: RunSummary) -> dict:
    checks = early_stopping_line(run.early_stopping_history, run.stop_reason, run.restored_step)
    return {
        "dataset": config.dataset_name or config.train_data_dir,
        "optimizer steps": run.global_step,
        "stopped by": run.stop_reason,
        "effective batch size": config.train_batch_size * config.gradient_accumulation_steps * run.num_processes,
        "processes": run.num_processes,
        "final training loss": None if run.final_loss is None else round(run.final_loss, 5),
        "training time (s)": round(run.train_seconds, 1),
        "EMA weights": config.use_ema,
        **({"early-stopping checks": checks} if checks else {}),
        "config": config.to_dict(),
    }


def build_card_data(
    config, run: RunSummary, report=None, explanation: dict | None = None, methods: tuple[str, ...] = ()
) -> ExplanationCardData:
    """
    [`ExplanationCardData`] for a finished run: the training section from `config` and `run`, the
    [`EvaluationReport`] as model-index results (honest names, e.g. "FID (digits-CNN features)") plus its
    memorisation numbers and PNGs, and the fields `Modality.explain` returned.
    """
    dataset = config.dataset_name or config.train_data_dir
    fields = dict(explanation or {})
    figures = dict(fields.pop("figures", {}) or {})
    eval_results, memorization, evaluation_warnings = None, None, None
    if report is not None:
        evaluation_warnings = list(report.warnings) or None
        eval_results = [
            {
                "metric_type": m.key or m.name,
                "metric_name": m.name,
                "metric_value": m.value,
                "dataset_name": str(dataset),
            }
            for m in report.metrics
            if math.isfinite(m.value)  # as `report.to_eval_results()`: a metric that could not be computed is left out
        ]
        memorization = {m.name: m.value for m in report.metrics if MEMORIZATION_KEYS.match(m.key)} or None
        for name, path in report.artifacts.items():
            figures[f"evaluation_{name}"] = {"path": path, "caption": f"evaluation: {name.replace('_', ' ')}"}
    reproduce = REPRODUCE.format(config=CONFIG_FILE)
    if methods:
        reproduce += FIGURES.format(seed=config.seed, steps=sampling_steps(config), methods=", ".join(methods))
    return ExplanationCardData(
        modality=config.modality,
        model_name=(config.hub_model_id or os.path.basename(os.path.abspath(config.output_dir))).split("/")[-1],
        training=_training_section(config, run),
        figures=figures,
        eval_results=eval_results,
        memorization=memorization,
        evaluation_warnings=evaluation_warnings,
        datasets=[dataset] if isinstance(dataset, str) and _HUB_DATASET_ID.match(dataset) else None,
        tags=["diffusers-training"],
        reproduce=reproduce,
        **fields,
    )


def write_card(
    save_directory, pipeline, config, run: RunSummary, report=None, explanation=None, methods: tuple[str, ...] = ()
):
    """
    Write `training_config.yaml` (the run's keys; there is no token key) and the
    explanation card ([`build_card_data`] → `save_explanation_card`) into `save_directory`; returns the `ModelCard`.
    `pipeline` is the pipeline object or the folder it was saved to (then the card summarises what is on disk).
    """
    import yaml

    atomic_write(Path(save_directory) / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=True))
    community = community_pipeline_file(summarize_pipeline(pipeline)["class_name"])
    return save_explanation_card(
        save_directory,
        pipeline,
        build_card_data(config, run, report, explanation, methods),
        repo_id=config.hub_model_id,
        community_file=community.stem if community else None,
    )


def finish_run(pipeline, modality, config, run: RunSummary) -> dict:
    """
    Evaluate (when `config.eval_samples`), explain (when `config.explanation_card`), write `README.md`,
    `explanations/` and `evaluation/report.json` into `config.output_dir`, and push when `config.push_to_hub`.
    Runs on the main process only. Returns `{"report": EvaluationReport | None, "card": ModelCard,
    "commit_url": str | None}`.
    """
    output_dir = config.output_dir
    report = None
    if config.eval_samples:
        report = modality.evaluate(pipeline, config, config.eval_samples, os.path.join(output_dir, "evaluation"))
        report.details["source"] = {"global_step": run.global_step, "num_samples": config.eval_samples}
        report.save(os.path.join(output_dir, "evaluation", "report.json"))
        logger.info(report.summary())
    explanation, methods = None, ()
    if config.explanation_card:
        methods = tuple(config.explain_methods or modality.default_explain_methods)
        explanation = modality.explain(pipeline, config, methods, os.path.join(output_dir, "explanations"))
    card = write_card(output_dir, pipeline, config, run, report, explanation, methods)
    commit_url = None
    if config.push_to_hub:
        commit_url = push_run(config)
    return {"report": report, "card": card, "commit_url": commit_url}
