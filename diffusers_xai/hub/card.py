"""Explanation cards: a `huggingface_hub.ModelCard` rendered from our own Jinja template, plus the figures and a
machine-readable `explanations/summary.json` that travel with every checkpoint.

Every input is optional and plain (dicts of numbers, paths to PNGs), so explainers and evaluators only hand over
their results; the card renders the sections it has and lists the ones it does not.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..utils.io import atomic_write
from .files import check_png, check_save_directory, resolve_inside
from .summary import jsonable, redact, summarize_pipeline

__all__ = [
    "SUMMARY_PATH",
    "ExplanationCardData",
    "explanation_card",
    "load_explanation_card_data",
    "save_explanation_card",
]


TEMPLATE_PATH = Path(__file__).parent / "templates" / "explanation_card.md.jinja"
SUMMARY_PATH = "explanations/summary.json"
SAMPLES_PATH = "samples/grid.png"
FIGURES_DIR = "explanations"
SUMMARY_FORMAT = "diffusers-xai/explanation-card"
BASE_TAGS = ("diffusers-xai", "explainability", "synthetic-data")
# Metrics computed in a learned feature space: their name must say which network made the features.
FEATURE_SPACE_METRICS = ("fid", "kid", "fd", "inception_score", "is", "precision", "recall", "density", "coverage")
_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# config keys shown in the card's component table (the full config goes to summary.json)
_MODEL_KEYS = (
    "sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
    "up_block_types", "attention_head_dim", "cross_attention_dim", "num_class_embeds",
)  # fmt: skip
_SCHEDULER_KEYS = (
    "num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type", "variance_type",
    "clip_sample", "thresholding", "timestep_spacing", "algorithm_type", "solver_order",
)  # fmt: skip


@dataclass
class ExplanationCardData:
    r"""
    What an explanation card shows. Every field is optional; missing sections are named in the card.

    Args:
        modality (`str`, *optional*): a registered [`Modality`] name (`"image"`, `"tabular"`, `"timeseries"`);
            inferred from the pipeline if unset.
        model_name (`str`, *optional*): title of the card and `model-index` name; defaults to the repo name.
        training (`dict`, *optional*): training data and config, e.g. `{"dataset": "sklearn digits (8x8)",
            "num_examples": 1797, "config": {...}}`. Keys that look like secrets (`*token*`, `*password*`, ...)
            are dropped.
        samples (`str` or `os.PathLike`, *optional*): a PNG sample grid, uploaded as `samples/grid.png`.
        figures (`dict[str, path | dict]`, *optional*): explanation figures by name (`"attention"`, `"gradcam"`,
            `"trajectory"`, `"attributions"`, ...): a PNG path or `{"path": ..., "caption": ...}`. Uploaded as
            `explanations/<name>.png`.
        explainers (`dict[str, dict]`, *optional*): the explained layers and methods, e.g.
            `{"gradcam": {"layer": "mid_block.resnets.1", "timesteps": [999, 500, 10]}}`.
        faithfulness (`dict[str, float]`, *optional*): faithfulness numbers (deletion/insertion AUC, ...).
        sanity_checks (`dict`, *optional*): sanity-check results (model/data randomisation rank correlations, ...).
        verdicts (`list[dict]`, *optional*): per-method verdict rows (`method`, `deletion`, `insertion`,
            `randomization`, `planted`, `verdict`: strings with pass/fail, numbers and CIs). Defaults to the measured
            verdicts of `bench/explain_faithfulness.py` for this modality ([`verdict_rows`]).
        verdict_note (`str`, *optional*): where the verdicts were measured (set with the benchmark's verdicts).
        explanation_warnings (`list[str]`, *optional*): warnings about the explanations, e.g. a target that does not
            depend on the model; `"warning"` entries of `sanity_checks` are added.
        memorization (`dict`, *optional*): memorisation check (nearest-neighbour distances to training data, ...).
        evaluation_warnings (`list[str]`, *optional*): the evaluation's warnings (a DCR ratio below 0.9, no holdout
            to measure it against, ...), shown under the evaluation results.
        eval_results (`list[EvalResult | dict]`, *optional*): generation metrics for the `model-index`. A dict
            needs `metric_type`, `metric_value`, `dataset_name` (and takes `task_type`, `dataset_type`,
            `dataset_split`, `metric_name`, `feature_extractor`). Feature-space metrics (FID, KID, precision/recall,
            ...) must name their feature extractor (`feature_extractor=` or an explicit `metric_name=`): an FID on
            Inception features of 8x8 digits is not comparable with a published FID.
        intended_use (`str`, *optional*) / limitations (`str`, *optional*): free text; sensible defaults otherwise.
        reproduce (`str`, *optional*): commands or code that regenerate the figures.
        license (`str`, *optional*, defaults to `"apache-2.0"`), datasets (`list[str]`, *optional*: Hub dataset
            ids), base_model (`str`, *optional*), tags (`list[str]`, *optional*: extra tags),
            pipeline_tag (`str`, *optional*: overrides the modality default).
    """

    modality: str | None = None
    model_name: str | None = None
    training: dict | None = None
    samples: str | os.PathLike | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    explainers: dict[str, Any] | None = None
    faithfulness: dict[str, Any] | None = None
    sanity_checks: dict[str, Any] | None = None
    memorization: dict[str, Any] | None = None
    evaluation_warnings: list[str] | None = None
    verdicts: list[dict] | None = None
    verdict_note: str | None = None
    explanation_warnings: list[str] | None = None
    eval_results: list[EvalResult | dict] | None = None
    intended_use: str | None = None
    limitations: str | None = None
    reproduce: str | None = None
    license: str = "apache-2.0"
    datasets: list[str] | None = None
    base_model: str | None = None
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> ExplanationCardData:
        """Build from a plain dict (e.g. a JSON file); unknown keys raise a `ValueError` naming them."""
        if not isinstance(data, dict):
            raise TypeError(f"Expected a dict of ExplanationCardData fields, got {type(data).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown explanation card field(s) {unknown}; valid fields are {sorted(known)}.")
        return cls(**data)


# ---- helpers ----
def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _rows(metrics: dict | None) -> list[tuple[str, str]]:
    """`(name, formatted value)` rows of a possibly nested metrics dict (nested keys joined with '/')."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        else:
            rows.append((prefix, _fmt(obj)))

    walk("", jsonable(metrics or {}))
    return rows


def _infer_modality(summary: dict) -> str:
    from ..modalities import modality_of

    denoisers = [c["class_name"] for c in summary["components"].values()]
    try:
        return modality_of(summary["class_name"], denoisers).name
    except ValueError as err:
        raise ValueError(f"Cannot infer the modality of a {summary['class_name']}: {err} Pass modality=.") from None


def _resolve_modality(name: str | None):
    """The registered [`Modality`] a card is about (a `ValueError` for an old or unknown name)."""
    from ..modalities import check_modality_name, list_modalities

    names = [m.name for m in list_modalities()]
    if name is None:
        raise ValueError(f"Pass modality= one of {names} (there is no pipeline to infer it from).")
    check_modality_name(name)
    if name not in names:
        raise ValueError(f"modality must be one of {names}, got {name!r}.")
    return next(m for m in list_modalities() if m.name == name)


def _normalize_figures(figures: dict) -> dict[str, dict]:
    out = {}
    for name, spec in (figures or {}).items():
        if not isinstance(name, str) or not _FIGURE_NAME.match(name):
            raise ValueError(
                f"Figure name {name!r} is not a valid file name; use letters, digits, '-', '_', '.' (e.g. 'gradcam')."
            )
        if isinstance(spec, dict):
            if "path" not in spec:
                raise ValueError(f"Figure {name!r} is a dict without a 'path' key: {spec!r}.")
            path, caption = spec["path"], spec.get("caption")
        else:
            path, caption = spec, None
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Figure {name!r} points to {path}, which does not exist; save the PNG first.")
        check_png(path, f"Figure {name!r}")
        out[name] = {"source": path, "path": f"{FIGURES_DIR}/{name}.png", "caption": caption or name}
    return out


def _normalize_eval_results(eval_results, default_task: str, default_dataset: str | None) -> list[EvalResult]:
    out = []
    for item in eval_results or []:
        if isinstance(item, EvalResult):
            out.append(item)
            continue
        if not isinstance(item, dict):
            raise TypeError(f"eval_results items must be EvalResult or dict, got {type(item).__name__}.")
        item = dict(item)
        missing = [k for k in ("metric_type", "metric_value") if k not in item]
        dataset_name = item.pop("dataset_name", None) or default_dataset
        if missing or dataset_name is None:
            raise ValueError(
                f"eval result {item!r} needs metric_type, metric_value and dataset_name (missing: "
                f"{missing + ([] if dataset_name else ['dataset_name'])})."
            )
        value = jsonable(item.pop("metric_value"))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"metric_value of {item['metric_type']!r} must be a finite number, got {value!r}.")
        extractor = item.pop("feature_extractor", None)
        metric_name = item.pop("metric_name", None)
        metric_type = item.pop("metric_type")
        if metric_name is None:
            if metric_type.lower() in FEATURE_SPACE_METRICS and extractor is None:
                raise ValueError(
                    f"{metric_type!r} is computed in a learned feature space: pass feature_extractor= (e.g. "
                    "'inception-v3 pool3') or an explicit metric_name= so the card says what was measured."
                )
            metric_name = f"{metric_type} ({extractor} features)" if extractor else metric_type
        out.append(
            EvalResult(
                task_type=item.pop("task_type", default_task),
                dataset_type=item.pop("dataset_type", dataset_name),
                dataset_name=dataset_name,
                metric_type=metric_type,
                metric_value=value,
                metric_name=metric_name,
                **item,
            )
        )
    return out


DEFAULT_INTENDED_USE = (
    "Research on explainable generative modelling: generating synthetic {modality} data and inspecting why the "
    "model generated it. Not intended for decisions about people or as a substitute for real data without "
    "validating the synthetic data for the task at hand."
)
DEFAULT_LIMITATIONS = (
    "Explanations (attention maps, GradCAM, attributions) show where the network's computation is sensitive; "
    "they are not causal proofs and can look plausible even for a randomised model, which is what the sanity "
    "checks test. Synthetic data inherits the biases of the training data and may reproduce training examples; "
    "see the memorisation check."
)


_VERDICT_KEYS = ("method", "deletion", "insertion", "randomization", "planted", "verdict")


def _warnings(obj: Any) -> list[str]:
    """Every non-empty `"warning"` string in a nested dict/list (the sanity checks' model-independence flags)."""
    if isinstance(obj, dict):
        found = [obj["warning"]] if isinstance(obj.get("warning"), str) and obj["warning"] else []
        return found + [w for k, v in obj.items() if k != "warning" for w in _warnings(v)]
    if isinstance(obj, list | tuple):
        return [w for v in obj for w in _warnings(v)]
    return []


MODEL_INDEPENDENCE_SPEARMAN = 0.9  # as `RandomizationCheck.independence_threshold`


def _independence(sanity_checks: dict | None) -> list[str]:
    """A warning per method whose maps barely change when every weight is re-initialised (`{"spearman": >= 0.9}`)."""
    out = []
    for method, entry in (sanity_checks or {}).items():
        rho = entry.get("spearman") if isinstance(entry, dict) else None
        if isinstance(rho, int | float) and not isinstance(rho, bool) and rho >= MODEL_INDEPENDENCE_SPEARMAN:
            out.append(
                f"{method}: the maps of a fully randomised model are nearly those of the trained one (Spearman "
                f"{rho:.2f} >= {MODEL_INDEPENDENCE_SPEARMAN}); the explained target does not depend on the model's "
                "weights: explain ExplanationTarget(output='model_contribution')."
            )
    return out


def _verdicts(data: ExplanationCardData, modality: str) -> tuple[list[dict], str | None]:
    """The per-method verdict rows of the card and the note that says where they were measured."""
    if data.verdicts is not None:
        rows = [{k: str(r.get(k, "–")) for k in _VERDICT_KEYS} for r in data.verdicts]
        return rows, data.verdict_note
    from ..explain.verdicts import MAGNITUDE_MARK, MAGNITUDE_NOTE, load_verdicts, verdict_rows

    key = "timeseries" if modality == "time-series" else modality
    report = load_verdicts()
    entry = report["modalities"].get(key)
    if not entry:
        return [], None
    benchmarked = set(entry["methods"])
    shown = [m for m in (data.explainers or {}) if m in benchmarked]
    rows = verdict_rows(key, methods=None)  # every benchmarked method: the failing ones are shown failing
    note = (
        f"Measured by `{entry.get('command', report['command'])}` on the bundled `{entry['model']}` model: "
        f"{entry['samples']} generated "
        f"samples × timesteps {entry['timesteps']} of {entry['inference_steps']} DDIM steps. A method passes when "
        "both 95% bootstrap intervals of its deletion and insertion gains over random maps exclude 0, its maps change "
        "under full model randomisation (Spearman < 0.5) and it recovers planted ground truth (>= 0.8); failing "
        "methods are off the default methods."
    )
    targets = dict.fromkeys(
        v["settings"]["target"] for v in entry["methods"].values() if "target" in v.get("settings", {})
    )
    if targets:  # which question the verdicts are about (tables: each column's model contribution; issue 13)
        note += f" Explained target: {'; '.join(targets)}."
    if any(r["deletion"].endswith(MAGNITUDE_MARK) for r in rows):
        note += " " + MAGNITUDE_NOTE
    if shown:
        note += f" Methods explained on this card: {', '.join(shown)}."
    return rows, note


def _class_conditional(summary: dict | None) -> bool:
    """Whether a summarised pipeline's denoiser has a class embedding (`num_class_embeds`)."""
    components = (summary or {}).get("components", {})
    return any(comp.get("config", {}).get("num_class_embeds") for comp in components.values())


def _card_context(pipeline, data: ExplanationCardData, repo_id: str | None, community_file: str | None) -> dict:
    summary = summarize_pipeline(pipeline) if pipeline is not None else None
    plugin = _resolve_modality(data.modality or (_infer_modality(summary) if summary else None))
    modality, adjective = plugin.name, plugin.adjective or plugin.name
    model_name = data.model_name or (repo_id.split("/")[-1] if repo_id else None) or "diffusers-xai-model"
    conditional = _class_conditional(summary)
    # the Hub has no class-conditional generation task: such models carry no pipeline_tag, as diffusers' own
    # class-conditional checkpoints (DiTPipeline, facebook/DiT-XL-2-256) do, and a `class-conditional` tag instead
    pipeline_tag = data.pipeline_tag or (None if conditional else plugin.pipeline_tag)
    training = jsonable(redact(data.training)) if data.training else None
    dataset_hint = training.get("dataset") if isinstance(training, dict) else None
    default_task = pipeline_tag or f"{adjective}-generation"
    eval_results = _normalize_eval_results(data.eval_results, default_task, dataset_hint)
    figures = _normalize_figures(data.figures)
    samples = Path(data.samples) if data.samples is not None else None
    if samples is not None and not samples.is_file():
        raise ValueError(f"samples={samples} does not exist; save the sample grid PNG first.")
    if samples is not None:
        check_png(samples, "samples")
    sections = {
        "model and scheduler summary": summary is not None,
        "training data and config": bool(training),
        "sample grid": samples is not None,
        "explanation figures": bool(figures),
        "explained layers and methods": bool(data.explainers),
        "faithfulness": bool(data.faithfulness),
        "sanity checks": bool(data.sanity_checks),
        "memorisation check": bool(data.memorization),
        "evaluation results": bool(eval_results),
        "how to reproduce": bool(data.reproduce),
    }
    verdicts, verdict_note = _verdicts(data, modality)
    warnings = [*(data.explanation_warnings or []), *_warnings(data.sanity_checks), *_independence(data.sanity_checks)]
    warnings = list(dict.fromkeys(warnings))
    # a pipeline given as a folder is only summarised (its components are not loaded): no per-pipeline notes then
    notes = plugin.card_limitations(pipeline) if pipeline is not None and not isinstance(pipeline, (str, Path)) else []
    return {
        "limitations": "\n\n".join([data.limitations or DEFAULT_LIMITATIONS, *notes]),
        "verdicts": verdicts,
        "verdict_note": verdict_note,
        "explanation_warnings": warnings,
        "summary": summary,
        "modality": modality,
        "adjective": adjective,
        "model_name": model_name,
        "pipeline_tag": pipeline_tag,
        "tags": [*BASE_TAGS, modality, *(["class-conditional"] if conditional else []), *data.tags],
        "training": training,
        "eval_results": eval_results,
        "figures": figures,
        "samples": samples,
        "sections": sections,
        "repo_id": repo_id,
        "community_file": community_file,
    }


def _summary_json(data: ExplanationCardData, ctx: dict) -> dict:
    from .. import __version__

    return {
        "format": SUMMARY_FORMAT,
        "format_version": 1,
        "diffusers_xai_version": __version__,
        "repo_id": ctx["repo_id"],
        "model_name": ctx["model_name"],
        "modality": ctx["modality"],
        "pipeline": ctx["summary"],
        "training": ctx["training"],
        "samples": SAMPLES_PATH if ctx["samples"] is not None else None,
        "figures": {n: {"path": f["path"], "caption": f["caption"]} for n, f in ctx["figures"].items()},
        "explainers": jsonable(data.explainers),
        "faithfulness": jsonable(data.faithfulness),
        "sanity_checks": jsonable(data.sanity_checks),
        "memorization": jsonable(data.memorization),
        "verdicts": ctx["verdicts"],
        "verdict_note": ctx["verdict_note"],
        "explanation_warnings": ctx["explanation_warnings"],
        "evaluation_warnings": list(data.evaluation_warnings or []),
        "eval_results": [jsonable({k: v for k, v in asdict(r).items() if v is not None}) for r in ctx["eval_results"]],
        "intended_use": data.intended_use,
        "limitations": data.limitations,
        "reproduce": data.reproduce,
        "license": data.license,
        "datasets": data.datasets,
        "base_model": data.base_model,
        "tags": list(data.tags),
        "pipeline_tag": data.pipeline_tag,
        "missing_sections": [name for name, ok in ctx["sections"].items() if not ok],
    }


def _render(data: ExplanationCardData, ctx: dict) -> ModelCard:
    card_data = ModelCardData(
        library_name="diffusers",
        license=data.license,
        pipeline_tag=ctx["pipeline_tag"],
        tags=list(dict.fromkeys(ctx["tags"])),
        datasets=data.datasets,
        base_model=data.base_model,
        model_name=ctx["model_name"] if ctx["eval_results"] else None,
        eval_results=ctx["eval_results"] or None,
    )
    summary = ctx["summary"]
    components = []
    for name, comp in (summary or {}).get("components", {}).items():
        keys = _SCHEDULER_KEYS if "Scheduler" in comp["class_name"] else _MODEL_KEYS
        shown = [(k, _fmt(comp["config"][k])) for k in keys if comp["config"].get(k) is not None]
        params = comp["num_parameters"]
        components.append(
            {
                "name": name,
                "class_name": comp["class_name"],
                "num_parameters": f"{params:,}" if params else "",
                "config": shown,
            }
        )
    training = ctx["training"] if isinstance(ctx["training"], dict) else {}
    training_rows = [(k, _fmt(v)) for k, v in training.items() if k != "config"]
    training_config = json.dumps(training.get("config"), indent=2, sort_keys=True) if training.get("config") else None
    eval_rows = [
        (r.metric_name or r.metric_type, _fmt(r.metric_value), r.dataset_name, r.dataset_split or "")
        for r in ctx["eval_results"]
    ]
    explainers = [
        (name, _rows(cfg) if isinstance(cfg, dict) else [("", _fmt(cfg))])
        for name, cfg in (data.explainers or {}).items()
    ]
    # As `ModelCard.from_template(card_data, template_path=...)`, but with trim_blocks/lstrip_blocks (so the template
    # can be indented readably without stray blank lines breaking Markdown tables) and StrictUndefined (a typo in
    # the template fails loudly instead of rendering an empty section).
    env = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    template = env.from_string(TEMPLATE_PATH.read_text(encoding="utf-8"))
    return ModelCard(
        template.render(
            card_data=card_data.to_yaml(),
            model_name=ctx["model_name"],
            repo_id=ctx["repo_id"] or "<namespace>/<repo>",
            modality=ctx["adjective"],
            pipeline_class=summary["class_name"] if summary else None,
            components=components,
            training_rows=training_rows,
            training_config=training_config,
            samples_path=SAMPLES_PATH if ctx["samples"] is not None else None,
            figures=[{"name": n, **f} for n, f in ctx["figures"].items()],
            explainers=explainers,
            faithfulness=_rows(data.faithfulness),
            sanity_checks=_rows(data.sanity_checks),
            memorization=_rows(data.memorization),
            verdicts=ctx["verdicts"],
            verdict_note=ctx["verdict_note"],
            explanation_warnings=ctx["explanation_warnings"],
            eval_rows=eval_rows,
            evaluation_warnings=list(dict.fromkeys(data.evaluation_warnings or [])),
            intended_use=data.intended_use or DEFAULT_INTENDED_USE.format(modality=ctx["adjective"]),
            limitations=ctx["limitations"],
            reproduce=data.reproduce,
            community_file=ctx["community_file"],
            summary_path=SUMMARY_PATH,
            missing_sections=[name for name, ok in ctx["sections"].items() if not ok],
        )
    )


def _as_card_data(card: ExplanationCardData | dict | None) -> ExplanationCardData:
    if card is None:
        return ExplanationCardData()
    if isinstance(card, dict):
        return ExplanationCardData.from_dict(card)
    if isinstance(card, ExplanationCardData):
        return card
    raise TypeError(f"card must be an ExplanationCardData, a dict or None, got {type(card).__name__}.")


def explanation_card(
    pipeline=None,
    card: ExplanationCardData | dict | None = None,
    *,
    repo_id: str | None = None,
    community_file: str | None = None,
) -> ModelCard:
    """
    Render the explanation card (a `ModelCard`) without writing anything.

    Args:
        pipeline (`DiffusionPipeline`, `str` or `os.PathLike`, *optional*): the pipeline or its saved directory, for
            the model/scheduler summary and the modality.
        card ([`ExplanationCardData`] or `dict`, *optional*): what to show.
        repo_id (`str`, *optional*): used in the "how to load" snippet and as default model name.
        community_file (`str`, *optional*): name of the community pipeline file shipped in the repo (adds the stock
            `DiffusionPipeline.from_pretrained(..., custom_pipeline=...)` snippet).

    Example:

    ```py
    >>> from diffusers_xai.hub import ExplanationCardData, explanation_card
    >>> card = explanation_card(pipe, ExplanationCardData(faithfulness={"deletion_auc": 0.21}), repo_id="me/digits")
    >>> card.data.tags
    ['diffusers-xai', 'explainability', 'synthetic-data', 'image']
    ```
    """
    data = _as_card_data(card)
    return _render(data, _card_context(pipeline, data, repo_id, community_file))


def save_explanation_card(
    save_directory: str | os.PathLike,
    pipeline=None,
    card: ExplanationCardData | dict | None = None,
    *,
    repo_id: str | None = None,
    community_file: str | None = None,
) -> ModelCard:
    """
    Write the explanation card into `save_directory`: `README.md`, `samples/grid.png`, `explanations/<name>.png`
    for every figure and `explanations/summary.json`.

    Each file is written to a temporary name and moved into place, and `README.md` is written last, so an
    interrupted save never leaves a half-written file. Arguments are those of [`explanation_card`]; with
    `pipeline=None` the summary is read from `save_directory` if it holds a saved pipeline.

    Returns:
        `ModelCard`: the card that was written.
    """
    save_directory = check_save_directory(save_directory)
    if pipeline is None and (save_directory / "model_index.json").is_file():
        pipeline = save_directory
    data = _as_card_data(card)
    ctx = _card_context(pipeline, data, repo_id, community_file)
    model_card = _render(data, ctx)  # render (and so validate every input) before writing anything
    save_directory.mkdir(parents=True, exist_ok=True)
    copies = [(f["source"], save_directory / f["path"]) for f in ctx["figures"].values()]
    if ctx["samples"] is not None:
        copies.append((ctx["samples"], save_directory / SAMPLES_PATH))
    for source, target in copies:
        if target.exists() and os.path.samefile(source, target):
            continue
        atomic_write(target, Path(source).read_bytes())
    summary = json.dumps(_summary_json(data, ctx), indent=2, allow_nan=False)  # keeps figure order
    atomic_write(save_directory / SUMMARY_PATH, summary)
    atomic_write(save_directory / "README.md", str(model_card))
    return model_card


def load_explanation_card_data(save_directory: str | os.PathLike) -> ExplanationCardData:
    """
    Read back the [`ExplanationCardData`] of a directory written by [`save_explanation_card`] (from
    `explanations/summary.json`; figure paths point into the directory), e.g. to re-render its card.
    """
    save_directory = Path(save_directory)
    path = save_directory / SUMMARY_PATH
    if not path.is_file():
        raise ValueError(f"{save_directory} has no {SUMMARY_PATH}; write one with save_explanation_card().")
    summary = json.loads(path.read_text())
    if summary.get("format") != SUMMARY_FORMAT:
        raise ValueError(f"{path} is not a diffusers-xai explanation summary (format={summary.get('format')!r}).")
    # paths in a summary are data from the folder (maybe someone else's): resolved inside it, PNGs only
    figures = {}
    for n, f in (summary.get("figures") or {}).items():
        what = f"figure {n!r} in {path}"
        figure = resolve_inside(save_directory, f.get("path") if isinstance(f, dict) else f, what)
        figures[n] = {"path": check_png(figure, what), "caption": f.get("caption") if isinstance(f, dict) else None}
    known = {f.name for f in fields(ExplanationCardData)}
    kwargs = {k: v for k, v in summary.items() if k in known and v is not None}
    kwargs["figures"] = figures
    if summary.get("samples"):
        what = f"'samples' in {path}"
        kwargs["samples"] = check_png(resolve_inside(save_directory, summary["samples"], what), what)
    kwargs["eval_results"] = [EvalResult(**r) for r in summary.get("eval_results") or []]
    return ExplanationCardData(**kwargs)
