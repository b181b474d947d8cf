"""What every tab of the dashboard shares: bounds, feature lookup, input checks, model loading, files, traces."""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch
from safetensors.torch import save_file

from diffusers_xai import SCHEDULERS, Trace, modality_of
from diffusers_xai.pipelines import SavedPipelineMismatchError
from diffusers_xai.utils.io import atomic_path, atomic_write

logger = logging.getLogger("diffusers_xai.space")

SPACE_DIR = Path(__file__).resolve().parents[1]

# ---- bounds: one visitor cannot exhaust the Space ----
MAX_STEPS = 1000
MAX_SEED = 2**32 - 1
MAX_PARAMS = int(float(os.environ.get("DIFFUSERS_XAI_MAX_PARAMS", 50e6)))
# what a Hub model may weigh (its safetensors and configs), checked from the repo's metadata before any download
MAX_DOWNLOAD_BYTES = int(float(os.environ.get("DIFFUSERS_XAI_MAX_DOWNLOAD_MB", 256)) * 2**20)
CONCURRENCY = max(1, int(os.environ.get("DIFFUSERS_XAI_CONCURRENCY", "1")))
# Gradio's `time_limit` bounds only streaming events (gradio 6 `queueing.py` reads it for `connection == "stream"`),
# so a run is bounded up front instead: denoiser evaluations per request (steps x batch), per tab.
WORK_SCALE = float(os.environ.get("DIFFUSERS_XAI_WORK_SCALE", "1"))
# the models a visitor may pick: the bundled ones, the tabs' defaults and this owner-set list (never free text)
ALLOWED_MODELS_ENV = "DIFFUSERS_XAI_ALLOWED_MODELS"
DEFAULT_MODEL_ENVS = ("DIFFUSERS_XAI_MODEL", "DIFFUSERS_XAI_TABULAR_MODEL", "DIFFUSERS_XAI_TIMESERIES_MODEL")
# files of a Hub pipeline the Space downloads: configs and safetensors weights (pickles and code never)
HUB_PATTERNS = ("model_index.json", "*/*.json", "*/*.safetensors")
TRACE_MAX_BYTES = 32 * 2**20
TRACE_MAX_STEPS = 100
FILE_TTL_SECONDS = 3600
SCHEDULER_LABELS = {"ddpm": "DDPM", "ddim": "DDIM", "dpmsolver": "DPM-Solver++"}
SCHEDULER_CHOICES = [(SCHEDULER_LABELS.get(k, k), k) for k in SCHEDULERS]

OUTPUT_DIR = Path(tempfile.gettempdir()) / "diffusers_xai_space"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# capture and the explainers install processors/hooks on shared denoisers: one model run at a time per process
MODEL_LOCK = threading.RLock()


def verdicts_markdown(modality: str) -> str:
    """The measured per-method verdicts of `bench/explain_faithfulness.py` for `modality`: pass/fail per check,
    numbers and 95% CIs (a method that fails a check is off the defaults and shown failing)."""
    try:
        from diffusers_xai import verdict_table

        table = verdict_table(modality)
    except Exception as err:  # the verdicts are informative: a broken file must not take the tab down
        return not_available("Method verdicts", f"{type(err).__name__}: {err}")
    return (
        "**Do these methods pass their own checks?** Deletion/insertion gains over random maps (95% bootstrap CIs "
        "must exclude 0), cascading model randomisation (Spearman < 0.5) and recovery of planted ground truth "
        "(>= 0.8), measured by `bench/explain_faithfulness.py`:\n\n" + table
    )


def not_available(what: str, reason: str | None) -> str:
    return f"**{what} not available:** {reason}."


# ---------------------------------------------------------------------------------------------------------------
# input checks: every handler validates what it gets (API clients bypass the sliders' bounds)
# ---------------------------------------------------------------------------------------------------------------
def _as_float(value, message: str) -> float:
    """`value` (a number or its text, not a bool or None) as a float, or `ValueError(message)`."""
    if isinstance(value, bool) or value is None:
        raise ValueError(message)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None


def check_int(name: str, value, low: int, high: int) -> int:
    """`value` as an int in [low, high], or `ValueError` naming the field, what was given and the range."""
    message = f"{name} must be an integer in [{low}, {high}], got {value!r}."
    as_float = _as_float(value, message)
    if not math.isfinite(as_float) or as_float != int(as_float) or not low <= int(as_float) <= high:
        raise ValueError(message)
    return int(as_float)


def check_number(name: str, value, low: float, high: float) -> float:
    """`value` as a float in [low, high], or `ValueError` naming the field, what was given and the range."""
    message = f"{name} must be a number in [{low:g}, {high:g}], got {value!r}."
    number = _as_float(value, message)
    if not low <= number <= high:  # NaN fails too
        raise ValueError(message)
    return number


def guidance_inputs(guidance_scale, maximum: float) -> dict:
    """The pipeline's `guidance_scale` keyword for a guidance slider's value, checked in [1, maximum]: none at 1 (the
    model may have no null class; above 1 the pipeline checks that it has one)."""
    guidance = check_number("Guidance scale", guidance_scale, 1.0, maximum)
    return {"guidance_scale": guidance} if guidance != 1.0 else {}


def check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {list(choices)}.")


def check_work(what: str, steps: int, batch: int, budget: int, draws: int = 1, why: str = "") -> None:
    """A request's work (`steps` x `batch` denoiser evaluations, x `draws` per row when rows are drawn until they
    hold a value, which `why` then says) within the tab's `budget` (x `WORK_SCALE`): the real bound on a handler's
    run time, checked before any model runs."""
    limit = int(budget * WORK_SCALE)
    work = steps * batch * draws
    if work > limit:
        factors = f"steps x {what}" + (" x draws" if draws > 1 else "")
        numbers = " x ".join(str(n) for n in (steps, batch, draws)[: 3 if draws > 1 else 2])
        said = f"{factors} = {numbers} = {work} is more than this Space runs per request ({limit})"
        raise ValueError(
            f"{why + said if why else said[0].upper() + said[1:]}; lower the steps or the {what.lower()}."
        )


# absolute paths of this machine (POSIX or Windows) in a message: never shown to a visitor
_SERVER_PATH = re.compile(r"(?<![\w.:/])(?:/|[A-Za-z]:\\)(?:[^\s'\"`,;:()]+)")


def scrub_paths(text: str) -> str:
    """`text` with every absolute filesystem path replaced by `<path>` (URLs and Hub ids are kept)."""
    return _SERVER_PATH.sub("<path>", text)


def handle_errors(fn: Callable) -> Callable:
    """Turn bad input into a visible `gr.Error` and anything unexpected into one too (logged): never a crash.
    Messages never show server paths."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
            raise gr.Error(scrub_paths(str(err).strip("'\""))) from err
        except Exception as err:
            logger.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Internal error ({type(err).__name__}); the details are in the Space's logs.") from err

    return wrapper


# ---------------------------------------------------------------------------------------------------------------
# models: a model box entry → a cached pipeline; every request gets its own scheduler
# ---------------------------------------------------------------------------------------------------------------
def allowed_models() -> list[str]:
    """The Hub ids and folders the Space owner allows besides the bundled models: the tabs' default models
    (`DIFFUSERS_XAI_MODEL`, ...) and the comma-separated `DIFFUSERS_XAI_ALLOWED_MODELS`."""
    entries = [os.environ.get(name, "") for name in DEFAULT_MODEL_ENVS]
    entries += re.split(r"[,\s]+", os.environ.get(ALLOWED_MODELS_ENV, ""))
    return list(dict.fromkeys(e.strip() for e in entries if e.strip()))


def model_choices(env_var: str, bundled_label: str) -> list[str]:
    """The model box's entries: the tab's default (`env_var`), the bundled model, then the owner's allow-list."""
    env = os.environ.get(env_var, "").strip()
    listed = [m.strip() for m in re.split(r"[,\s]+", os.environ.get(ALLOWED_MODELS_ENV, "")) if m.strip()]
    return list(dict.fromkeys(([env] if env else []) + [bundled_label] + listed))


def resolve_source(source: str | None, bundled_label: str, bundled_dir: Path) -> str:
    """The folder or Hub id behind a model-box entry (the bundled label, an empty box or None: the bundled one).
    Anything else must be on the owner's allow-list: a visitor never makes the Space read a path or download."""
    # the bundled folder itself comes back from the tabs' own state (a generation remembers where it came from)
    if source is None or not str(source).strip() or source in (bundled_label, str(bundled_dir)):
        return str(bundled_dir)
    source = str(source).strip()
    allowed = allowed_models()
    if source not in allowed:
        shown = source if len(source) <= 80 else source[:77] + "..."
        raise ValueError(
            f"Model {shown!r} is not available on this Space: choose {bundled_label!r}"
            + (f" or one of {allowed}" if allowed else "")
            + f". The Space owner can allow more with {ALLOWED_MODELS_ENV}."
        )
    return source


def check_hub_repo(repo_id: str) -> int:
    """
    Before downloading an allowed Hub pipeline: its metadata (`HfApi.model_info(files_metadata=True)`) must show a
    `model_index.json` and safetensors weights, and the files the Space would fetch (`HUB_PATTERNS`) must weigh at
    most `MAX_DOWNLOAD_BYTES`. Returns that size in bytes.
    """
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, files_metadata=True)
    files = {s.rfilename: s.size for s in info.siblings or []}
    if "model_index.json" not in files:
        raise ValueError(f"{repo_id!r} is not a diffusers pipeline repo (no model_index.json).")
    fetched = {f: size for f, size in files.items() if any(fnmatch(f, p) for p in HUB_PATTERNS) and f.count("/") < 2}
    if not any(f.endswith(".safetensors") for f in fetched):
        raise ValueError(f"{repo_id!r} has no safetensors weights; this Space never loads pickled (.bin) weights.")
    if any(size is None for size in fetched.values()):
        raise ValueError(f"The Hub did not report the file sizes of {repo_id!r}; it is not loaded.")
    total = sum(fetched.values())
    if total > MAX_DOWNLOAD_BYTES:
        raise ValueError(
            f"{repo_id!r} holds {total / 2**20:.1f} MiB of weights and configs; this Space downloads at most "
            f"{MAX_DOWNLOAD_BYTES / 2**20:.0f} MiB (DIFFUSERS_XAI_MAX_DOWNLOAD_MB)."
        )
    # the parameter cap, also before any download: each safetensors header (a byte-range read of its first few kB)
    # lists every tensor's shape, which huggingface_hub sums per dtype
    api = HfApi()
    weights = [f for f in fetched if f.endswith(".safetensors")]
    n_params = sum(sum(api.parse_safetensors_file_metadata(repo_id, f).parameter_count.values()) for f in weights)
    if n_params > MAX_PARAMS:
        raise ValueError(
            f"{repo_id!r} has {n_params / 1e6:.1f}M parameters in its safetensors weights; this Space accepts at most "
            f"{MAX_PARAMS / 1e6:.0f}M (set DIFFUSERS_XAI_MAX_PARAMS to raise it)."
        )
    return total


def denoiser_of(pipe) -> torch.nn.Module:
    return pipe.denoiser_model


def count_parameters(model: torch.nn.Module) -> int:
    """How many parameters `model` has (what `MAX_PARAMS` bounds and the model summaries report)."""
    return sum(p.numel() for p in model.parameters())


def model_summary(pipe, source: str, bundled_label: str, bundled_dir: Path, what: str) -> str:
    """A model summary's first words: the model of `source` (from `resolve_source`; the bundled one by its label),
    `what` it generates, its parameter count and T."""
    name = bundled_label if source == str(bundled_dir) else source
    n_params = count_parameters(denoiser_of(pipe))
    return f"**{name}**: {what}, {n_params / 1e6:.2f}M parameters, T={pipe.scheduler.config.num_train_timesteps}"


def _fetch(source: str) -> str:
    """A local folder as is; an allowed Hub id checked from its metadata, then only its configs and safetensors."""
    if os.path.isdir(source):
        return source
    from huggingface_hub import snapshot_download

    check_hub_repo(source)
    return snapshot_download(source, allow_patterns=list(HUB_PATTERNS))


@functools.lru_cache(maxsize=4)
def _from_pretrained(pipeline_class: type, source: str):
    try:
        # safetensors only: a pickled .bin from an unknown repo is never unpickled here
        pipe = pipeline_class.from_pretrained(_fetch(source), use_safetensors=True)
    except SavedPipelineMismatchError as err:  # "load it with X.from_pretrained" means nothing to a visitor
        try:
            tab = f": open it in the {modality_of(err.saved_class).name} tab"
        except ValueError:  # not a registered modality's pipeline
            tab = ""
        raise ValueError(f"{source!r} holds a {err.saved_class}, not a {pipeline_class.__name__}{tab}.") from err
    except ValueError as err:
        if "this Space" in str(err) or "pipeline repo" in str(err):
            raise
        name = pipeline_class.__name__
        raise ValueError(f"Could not load a {name} from {source!r}: {scrub_paths(str(err))}") from err
    except Exception as err:
        logger.exception("loading %s failed", source)
        raise ValueError(
            f"Could not load a {pipeline_class.__name__} from {source!r} ({type(err).__name__}). Check that it is a "
            "folder written by `save_pretrained` or a Hub id, and that the Hub is reachable."
        ) from err
    model = denoiser_of(pipe)
    n_params = count_parameters(model)
    if n_params > MAX_PARAMS:
        raise ValueError(
            f"{source!r} has {n_params / 1e6:.1f}M parameters; this Space accepts at most {MAX_PARAMS / 1e6:.0f}M "
            "(set DIFFUSERS_XAI_MAX_PARAMS to raise it)."
        )
    pipe.to(DEVICE)
    if DEVICE.type == "cpu" and model.dtype != torch.float32:
        model.to(torch.float32)  # half-precision checkpoints are slow (or unsupported) on CPU
    return pipe


def load_pipeline(pipeline_class: type, source: str, bundled_dir: Path):
    """The cached pipeline of `source` (a folder or Hub id); the bundled folder must hold a `model_index.json`."""
    if source == str(bundled_dir) and not (bundled_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"The bundled checkpoint {bundled_dir.name!r} is missing (no model_index.json).")
    with MODEL_LOCK:
        return _from_pretrained(pipeline_class, source)


@dataclass(frozen=True)
class BundledModel:
    """A tab's model box: the pipeline class it loads and the checkpoint bundled with the Space (`path`), listed as
    `label`; resolves, loads and summarises what a visitor picked."""

    pipeline_class: type
    path: Path
    label: str

    def source_of(self, model: str | None) -> str:
        return resolve_source(model, self.label, self.path)

    def load(self, model: str | None):
        return load_pipeline(self.pipeline_class, self.source_of(model), self.path)

    def summary(self, pipe, model: str | None, what: str) -> str:
        """A model summary's first words: the model's name, `what` it generates, its size and T."""
        return model_summary(pipe, self.source_of(model), self.label, self.path, what)


def with_scheduler(base, scheduler: str):
    """A pipeline around `base`'s cached modules with its own scheduler, so concurrent visitors never share one."""
    check_choice("scheduler", scheduler, list(SCHEDULERS))
    pipe = base.with_scheduler(scheduler)  # the same modules and settings (e.g. `class_names`), built with its own
    pipe.set_progress_bar_config(desc=f"Sampling ({SCHEDULER_LABELS.get(scheduler, scheduler)})")
    return pipe


def check_steps(pipe, num_inference_steps) -> int:
    steps = check_int("Steps", num_inference_steps, 1, MAX_STEPS)
    max_steps = pipe.scheduler.config.num_train_timesteps
    if steps > max_steps:
        raise ValueError(f"Steps must be at most the model's num_train_timesteps ({max_steps}), got {steps}.")
    return steps


# ---------------------------------------------------------------------------------------------------------------
# files (traces, plots, explanations): written atomically under OUTPUT_DIR, removed after FILE_TTL_SECONDS
# ---------------------------------------------------------------------------------------------------------------
def new_output_path(prefix: str, suffix: str = "") -> Path:
    """A fresh path under `OUTPUT_DIR`; entries older than `FILE_TTL_SECONDS` are removed on the way."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUTPUT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > FILE_TTL_SECONDS:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            pass  # another worker removed it first
    return OUTPUT_DIR / f"{prefix}-{uuid.uuid4().hex[:12]}{suffix}"


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """A safetensors file written to a temporary name, then renamed."""
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    return path


def save_text(text: str, path: Path) -> Path:
    return atomic_write(path, text)


def zip_folder(folder: Path) -> Path:
    """`folder` as `folder.zip`, written to a temporary name first and renamed."""
    tmp = shutil.make_archive(str(folder) + ".tmp", "zip", root_dir=folder)
    final = folder.with_suffix(".zip")
    os.replace(tmp, final)
    return final


# ---------------------------------------------------------------------------------------------------------------
# traces: saved at generation, read back (cached) by every view
# ---------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load_trace(path: str, mtime: float) -> Trace:
    return Trace.load(path)


def load_trace(state: dict | None) -> Trace:
    if not state or "trace_path" not in state:
        raise ValueError("Nothing generated yet: click Generate first.")
    path = state["trace_path"]
    if not os.path.isfile(path):
        raise ValueError("This trace has expired (traces are kept for an hour): click Generate again.")
    return _load_trace(path, os.path.getmtime(path))


def state_file(state: dict, key: str) -> str:
    path = state.get(key)
    if not path or not os.path.isfile(path):
        raise ValueError("The generated data have expired (they are kept for an hour): click Generate again.")
    return path


def recorded_step(trace: Trace, position, sample=None):
    """`(position, step, sample)` for the recorded step at slider `position` (and a checked sample index)."""
    position = check_int("Recorded step", position, 0, len(trace) - 1)
    step = trace.steps[position]
    if sample is None:
        return position, step, None
    return position, step, check_int("Sample", sample, 0, step.latents.shape[0] - 1)


def step_caption(trace: Trace, position: int) -> str:
    s = trace.steps[position]
    total = trace.num_inference_steps or len(trace)
    return (
        f"Step {s.step_index + 1} of {total} (timestep t = {s.timestep}); recorded step {position + 1}/{len(trace)}."
    )


def step_slider_update(trace: Trace, position: int) -> gr.Slider:
    # a Gradio slider needs minimum < maximum: a one-step trace gets a frozen 0..1 slider
    return gr.Slider(minimum=0, maximum=max(len(trace) - 1, 1), value=position, step=1, interactive=len(trace) > 1)


def generation_info(what: str, scheduler: str, steps: int, seed: int, trace: Trace) -> str:
    return (
        f"Generated {what} with {SCHEDULER_LABELS[scheduler]}, {steps} steps, seed {seed}; the trace holds "
        f"{len(trace)} steps ({trace.nbytes / 2**20:.1f} MiB)"
        + (", truncated at its memory budget." if trace.truncated else ".")
    )


def report_markdown(report) -> str:
    """An `EvaluationReport`'s text summary as a Markdown code block."""
    return f"```text\n{report.summary()}\n```"
