"""What every tab of the dashboard shares: bounds, feature lookup, input checks, model loading, files, traces."""

from __future__ import annotations

import functools
import importlib
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import torch
from safetensors.torch import save_file

from diffusers_xai import SCHEDULERS, Trace
from diffusers_xai.utils.io import atomic_path, atomic_write

logger = logging.getLogger("diffusers_xai.space")

SPACE_DIR = Path(__file__).resolve().parents[1]

# ---- bounds: one visitor cannot exhaust the Space ----
MAX_STEPS = 1000
MAX_SEED = 2**32 - 1
MAX_PARAMS = int(float(os.environ.get("DIFFUSERS_XAI_MAX_PARAMS", 50e6)))
CONCURRENCY = max(1, int(os.environ.get("DIFFUSERS_XAI_CONCURRENCY", "1")))
TIME_LIMIT_SECONDS = 600
TRACE_MAX_BYTES = 32 * 2**20
TRACE_MAX_STEPS = 100
FILE_TTL_SECONDS = 3600
SCHEDULER_LABELS = {"ddpm": "DDPM", "ddim": "DDIM", "dpmsolver": "DPM-Solver++"}
SCHEDULER_CHOICES = [(SCHEDULER_LABELS.get(k, k), k) for k in SCHEDULERS]

OUTPUT_DIR = Path(tempfile.gettempdir()) / "diffusers_xai_space"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# capture and the explainers install processors/hooks on shared denoisers: one model run at a time per process
MODEL_LOCK = threading.RLock()


# ---------------------------------------------------------------------------------------------------------------
# optional features, looked up once at start-up: (namespace, None) or (None, reason)
# ---------------------------------------------------------------------------------------------------------------
def find_feature(modules: Mapping[str, Sequence[str]]) -> tuple[SimpleNamespace | None, str | None]:
    """Import `names` from each module; on any failure return `(None, reason)` so the UI can say what is missing."""
    found = {}
    for module, names in modules.items():
        try:
            mod = importlib.import_module(module)
        except Exception as err:  # a missing or half-installed optional part must not take the whole app down
            return None, f"`{module}` cannot be imported ({type(err).__name__}: {err})"
        missing = [n for n in names if not hasattr(mod, n)]
        if missing:
            return None, f"`{module}` does not provide {', '.join(f'`{n}`' for n in missing)} in this version"
        found.update({n: getattr(mod, n) for n in names})
    return SimpleNamespace(**found), None


def not_available(what: str, reason: str | None) -> str:
    return f"**{what} not available:** {reason}."


def require(feature, reason: str | None, what: str) -> None:
    if feature is None:
        raise gr.Error(f"{what} not available: {reason}.")


# ---------------------------------------------------------------------------------------------------------------
# input checks: every handler validates what it gets (API clients bypass the sliders' bounds)
# ---------------------------------------------------------------------------------------------------------------
def check_int(name: str, value, low: int, high: int) -> int:
    """`value` as an int in [low, high], or `ValueError` naming the field, what was given and the range."""
    message = f"{name} must be an integer in [{low}, {high}], got {value!r}."
    if isinstance(value, bool) or value is None:
        raise ValueError(message)
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not math.isfinite(as_float) or as_float != int(as_float) or not low <= int(as_float) <= high:
        raise ValueError(message)
    return int(as_float)


def check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {list(choices)}.")


def handle_errors(fn: Callable) -> Callable:
    """Turn bad input into a visible `gr.Error` and anything unexpected into one too (logged): never a crash."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
            raise gr.Error(str(err).strip("'\"")) from err
        except Exception as err:
            logger.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Internal error ({type(err).__name__}: {err}).") from err

    return wrapper


# ---------------------------------------------------------------------------------------------------------------
# models: a model box entry → a cached pipeline; every request gets its own scheduler
# ---------------------------------------------------------------------------------------------------------------
def model_choices(env_var: str, bundled_label: str) -> list[str]:
    env = os.environ.get(env_var, "").strip()
    return ([env] if env else []) + [bundled_label]


def resolve_source(source: str | None, bundled_label: str, bundled_dir: Path) -> str:
    """The folder or Hub id behind a model-box entry (the bundled label, an empty box or None: the bundled one)."""
    if source is None or not str(source).strip() or source == bundled_label:
        return str(bundled_dir)
    return str(source).strip()


def denoiser_of(pipe) -> torch.nn.Module:
    return pipe.unet if getattr(pipe, "denoiser", None) is None else pipe.denoiser


def count_parameters(model: torch.nn.Module) -> int:
    """How many parameters `model` has (what `MAX_PARAMS` bounds and the model summaries report)."""
    return sum(p.numel() for p in model.parameters())


def display_name(source: str, bundled_label: str, bundled_dir: Path) -> str:
    """How a model summary names `source` (from `resolve_source`): the bundled model by its label, others as given."""
    return bundled_label if source == str(bundled_dir) else source


@functools.lru_cache(maxsize=4)
def _from_pretrained(pipeline_class: type, source: str):
    try:
        # safetensors only: a pickled .bin from an unknown repo is never unpickled here
        pipe = pipeline_class.from_pretrained(source, use_safetensors=True)
    except Exception as err:
        raise ValueError(
            f"Could not load a {pipeline_class.__name__} from {source!r} ({type(err).__name__}: {err}). Give a "
            "local folder written by `save_pretrained` or a Hub id (the Hub needs network access)."
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
        raise FileNotFoundError(f"The bundled checkpoint is missing: {bundled_dir} has no model_index.json.")
    with MODEL_LOCK:
        return _from_pretrained(pipeline_class, source)


def with_scheduler(base, scheduler: str):
    """A pipeline around `base`'s cached modules with its own scheduler, so concurrent visitors never share one."""
    check_choice("scheduler", scheduler, list(SCHEDULERS))
    pipe = type(base)(**base.components)
    pipe.set_progress_bar_config(desc=f"Sampling ({SCHEDULER_LABELS.get(scheduler, scheduler)})")
    pipe.set_scheduler(scheduler)
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
