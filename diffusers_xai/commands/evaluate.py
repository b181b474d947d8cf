"""`diffusers-xai evaluate`: sample from a saved pipeline (or read saved samples) and score them against real data.

diffusers-xai evaluate --pipeline outputs/quickstart/pipeline --data digits --num_samples 1000 --out report.json
diffusers-xai evaluate --samples synthetic.csv --data wine --target cultivar --out wine_report.json
diffusers-xai evaluate --samples windows.npy --data real_windows.npy --modality timeseries --out ts.json
"""

from __future__ import annotations

import inspect
import json
import logging
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from . import add_documented_parser

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

TABLE_DATASETS = ("wine", "breast_cancer")
SERIES_DATASETS = ("co2", "sines")  # the time-series modality's built-ins (`TIMESERIES_DATASETS`)
SINES_WINDOWS = 10_000  # real sines drawn for `--data sines`: TimeGAN's protocol (train/configs/sines.yaml)
ARRAY_SUFFIXES = (".npy", ".npz", ".safetensors")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl")  # also compressed (`hf_datasets.load_data_file`)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def register(subparsers) -> None:
    p = add_documented_parser(
        subparsers,
        "evaluate",
        "Score generated samples against real data (FID/KID/PRDC/memorisation, SDMetrics/TSTR, TimeGAN scores).",
        __doc__,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pipeline", help="A saved pipeline directory to sample from.")
    src.add_argument(
        "--samples",
        help="Already generated samples: .npy/.npz/.safetensors, .csv/.parquet, a folder of images, or a dataset "
        "folder written by `diffusers-xai generate` (scored without its seed/scheduler/... columns).",
    )
    p.add_argument(
        "--data",
        required=True,
        help="Real data: 'digits', 'wine', 'breast_cancer', 'co2', 'sines', a .npy/.npz/.safetensors/.csv/.parquet "
        "file or an image folder.",
    )
    p.add_argument("--out", required=True, help="Where to write the JSON report.")
    p.add_argument("--output_dir", default=None, help="Folder for the PNGs (default: next to --out).")
    p.add_argument(
        "--modality",
        default="auto",
        help="A registered modality (image, tabular, timeseries, ...), or 'auto' to tell it from the data.",
    )
    p.add_argument("--num_samples", type=int, default=1000, help="Samples to generate with --pipeline.")
    p.add_argument("--num_inference_steps", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=64, help="Sampling batch size.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available).")
    p.add_argument("--feature", default="digits-cnn", help="Image feature space: 'digits-cnn' or 'inception'.")
    p.add_argument("--target", default=None, help="Table column for TSTR/TRTR.")
    p.add_argument("--test_data", default=None, help="Real held-out data the generator never saw (tables).")
    p.add_argument(
        "--no_sdmetrics_privacy",
        action="store_true",
        help="Skip SDMetrics' DCR protection scores (pandas; ~20 s per 1,000 x 1,000 rows each).",
    )
    p.add_argument("--discriminative_iterations", type=int, default=2000)
    p.add_argument("--predictive_iterations", type=int, default=5000)
    p.add_argument("--no_progress", action="store_true", help="Hide progress bars.")
    p.set_defaults(func=run)


# ---- loading ----
def _load_array(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            key = next(
                (k for k in ("images", "samples", "windows", "data") if k in z), keys[0] if len(keys) == 1 else None
            )
            if key is None:
                raise ValueError(f"{path} holds arrays {keys}; name the one to use 'images', 'samples' or 'windows'.")
            return z[key]
    from safetensors.numpy import load_file

    tensors = load_file(path)
    key = next((k for k in ("images", "samples", "windows", "data") if k in tensors), None)
    if key is None:
        if len(tensors) != 1:
            raise ValueError(f"{path} holds tensors {sorted(tensors)}; name the one to use 'images' or 'samples'.")
        key = next(iter(tensors))
    return tensors[key]


def _load_image_folder(path: str):
    files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}.")
    return [_open_image(os.path.join(path, f)) for f in files]


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(
            f"Image file {path!r} cannot be read as an image ({type(err).__name__}): it is damaged or not an image; "
            "remove or re-save it."
        ) from err


def _load(spec: str, resolution: int = 16):
    """Real data or samples from a name or a path: a tensor/array, a list of PIL images or a DataFrame."""
    from ..modalities.hf_datasets import DATA_FILE_BUILDERS, data_file_suffix, load_data_file

    if spec == "digits":
        from ..modalities.image.data import load_digits_tensors

        return load_digits_tensors(resolution=resolution)[0]
    if spec in TABLE_DATASETS:  # as the trainer reads `dataset_name: wine` (its column names: `cultivar`, ...)
        from ..modalities.tabular.data import TABULAR_DATASETS

        return TABULAR_DATASETS[spec]()
    if os.path.isdir(spec):
        from ..generation import MANIFEST_NAME, load_generated_samples

        if os.path.isfile(os.path.join(spec, MANIFEST_NAME)):  # what `diffusers-xai generate` wrote
            return load_generated_samples(spec)[1]
        return _load_image_folder(spec)
    if not os.path.isfile(spec):
        raise ValueError(
            f"--data/--samples {spec!r} is neither a known dataset (digits, wine, breast_cancer; co2 and sines as "
            "--data) nor a file."
        )
    if data_file_suffix(spec) in DATA_FILE_BUILDERS:  # read as the trainer reads it
        return load_data_file(spec)["train"].to_pandas()
    if spec.endswith(ARRAY_SUFFIXES):
        return _load_array(spec)
    raise ValueError(f"Unsupported file type for {spec!r}; use {ARRAY_SUFFIXES + TABLE_SUFFIXES} or an image folder.")


def _pipeline_class(name: str):
    """Our pipeline class of that name (exported, or in any `diffusers_xai.pipelines` module); else diffusers'."""
    import importlib
    import pkgutil

    from diffusers import DiffusionPipeline

    import diffusers_xai
    import diffusers_xai.pipelines

    for namespace in (diffusers_xai, diffusers_xai.pipelines):
        if isinstance(getattr(namespace, name, None), type):
            return getattr(namespace, name)
    for info in pkgutil.iter_modules(diffusers_xai.pipelines.__path__):
        module = importlib.import_module(f"diffusers_xai.pipelines.{info.name}")
        if isinstance(getattr(module, name, None), type):
            return getattr(module, name)
    return DiffusionPipeline


def _load_pipeline(path: str, device: str):
    index = os.path.join(path, "model_index.json")
    if not os.path.isfile(index):
        raise FileNotFoundError(
            f"--pipeline {path!r} has no model_index.json; pass a folder written by save_pretrained."
        )
    with open(index, encoding="utf-8") as f:
        model_index = json.load(f)
    import importlib

    # diffusers loads components only from modules already imported; import the ones of this package (and only
    # those: a saved folder never makes us import arbitrary code)
    for value in model_index.values():
        if isinstance(value, list) and len(value) == 2 and str(value[0]).startswith("diffusers_xai."):
            importlib.import_module(value[0])
    pipe = _pipeline_class(str(model_index.get("_class_name"))).from_pretrained(path).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image_size(pipe) -> int | None:
    """The sample size of an image pipeline's `UNet2DModel`-like `unet`, else `None`."""
    config = getattr(getattr(pipe, "unet", None), "config", None)
    size = config.get("sample_size") if isinstance(config, dict) else None
    if size is None or config.get("in_channels") not in (1, 3, 4):
        return None
    return int(size if isinstance(size, int) else size[0])


def _modality(args, pipe, real) -> str:
    import pandas as pd

    from ..modalities import BUILTIN_MODALITIES, get_modality, modality_of

    if args.modality != "auto":
        return get_modality(args.modality).name
    if isinstance(real, pd.DataFrame):
        return "tabular"
    if pipe is not None:
        try:
            return modality_of(pipe).name
        except ValueError:
            if _image_size(pipe) is not None and getattr(real, "ndim", 0) >= 3:
                return "image"
    if args.data == "digits" or isinstance(real, list) or getattr(real, "ndim", 0) == 4:
        return "image"
    raise ValueError(
        f"Cannot tell the modality from --data and the samples; pass --modality {'|'.join(BUILTIN_MODALITIES)}."
    )


def _call_kwargs(pipe, **candidates) -> dict:
    params = inspect.signature(pipe.__call__).parameters
    return {k: v for k, v in candidates.items() if k in params}


def _first_output(out):
    import pandas as pd

    if isinstance(out, pd.DataFrame | np.ndarray | torch.Tensor):
        return out
    values = out.values() if isinstance(out, dict) else out  # diffusers' BaseOutput is an OrderedDict
    for v in values:
        if isinstance(v, pd.DataFrame | np.ndarray | torch.Tensor):
            return v
    raise ValueError(f"The pipeline returned {type(out).__name__} without a DataFrame/array/tensor field.")


def _generate(pipe, modality, args, device: str):
    """Samples as `modality.score` takes them: the modality says which `output_type` (images: `[B, C, H, W]` in
    [0, 1]; windows: `[B, T, D]` in the data's scale; rows: a DataFrame) and whether one call draws them all.
    Keywords a pipeline does not take are left out."""
    generator = torch.Generator(device=device).manual_seed(args.seed)
    common = {"generator": generator, "num_inference_steps": args.num_inference_steps}
    common["output_type"] = modality.evaluation_output_type
    if modality.sample_in_one_call:
        return _first_output(pipe(**_call_kwargs(pipe, num_rows=args.num_samples, **common)))
    chunks, done = [], 0
    with tqdm(total=args.num_samples, desc="sampling", disable=args.no_progress) as bar:
        while done < args.num_samples:
            n = min(args.batch_size, args.num_samples - done)
            # `batch_size` for image pipelines, `num_series` for TimeSeriesXAIPipeline
            out = _first_output(pipe(**_call_kwargs(pipe, batch_size=n, num_series=n, **common)))
            chunks.append(out.detach().cpu() if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out)))
            done += n
            bar.update(n)
    return torch.cat(chunks)


def _real_and_samples(args, pipe, device: str):
    """`(modality, real data, samples)`: the samples generated by `pipe` or read from --samples."""
    from ..modalities import get_modality

    size = _image_size(pipe)
    resolution = 16 if size is None else size
    if args.data in SERIES_DATASETS:  # cut into windows as the samples are: read after them
        modality = get_modality("timeseries" if args.modality == "auto" else args.modality)
        samples = _generate(pipe, modality, args, device) if pipe is not None else _load(args.samples, resolution)
        return modality, _series_windows(args.data, pipe, samples), samples
    real = _load(args.data, resolution)
    modality = get_modality(_modality(args, pipe, real))
    if pipe is not None:
        return modality, real, _generate(pipe, modality, args, device)
    samples = _load(args.samples, resolution)
    if args.data == "digits" and hasattr(samples, "shape") and len(samples.shape) >= 3:
        # match the digits to the samples' resolution ([N, C, H, W] tensors or [N, H, W(, C)] arrays)
        h = samples.shape[2] if isinstance(samples, torch.Tensor) and samples.ndim == 4 else samples.shape[1]
        real = _load("digits", int(h))
    return modality, real, samples


def _series_windows(name: str, pipe, samples) -> np.ndarray:
    """
    The built-in series `co2` / `sines` as real windows `[N, L, C]`, cut as a run with `dataset_name: co2` cuts them:
    with the pipeline's window length, stride and missing-value policy, or at the length of saved sample windows.
    `--data co2` was read as neither a dataset nor a file, so co2.yaml's model could not be evaluated by name.
    """
    from ..modalities.timeseries.data import clean_series, load_series, make_sines, make_windows

    config = getattr(getattr(pipe, "preprocessor", None), "config", None)
    if config is not None and "sequence_length" in config:
        length, stride, nan_policy = config.sequence_length, config.stride, config.nan_policy
    elif np.ndim(samples) == 3:
        length, stride, nan_policy = int(np.shape(samples)[1]), 1, "interpolate"
    else:
        raise ValueError(
            f"--data {name} is a long series to cut into windows: evaluate a time-series --pipeline, or --samples "
            "of windows [N, L, C]."
        )
    if name == "sines":
        return make_sines(SINES_WINDOWS, length, seed=0)
    values, names = load_series(name)
    return make_windows(clean_series(values, names, nan_policy), length, stride)


def _condition_column(pipe) -> str | None:
    """A table model's condition column, `None` for any other pipeline (or none)."""
    condition = getattr(getattr(pipe, "preprocessor", None), "condition", None)
    return None if condition is None else condition["name"]


def _writable_folder(flag: str, folder: str) -> None:
    """Refuse a folder that could not be written before the evaluation runs (nothing is created here: a later
    error leaves no empty folder behind)."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        what = "is a file, not a folder" if not os.path.isdir(existing) else "is not writable"
        raise ValueError(f"{flag}: cannot write into {folder!r}: {existing!r} {what}; pick another path.")


def run(args) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.num_samples < 2:
        raise ValueError(f"--num_samples must be at least 2, got {args.num_samples}.")
    output_dir = args.output_dir or os.path.join(os.path.dirname(os.path.abspath(args.out)), "eval_plots")
    for flag, folder in (("--out", os.path.dirname(os.path.abspath(args.out))), ("--output_dir", output_dir)):
        _writable_folder(flag, folder)  # before the evaluation's minutes, not after
    pipe = _load_pipeline(args.pipeline, device) if args.pipeline else None
    if args.target is None and (condition := _condition_column(pipe)) is not None:  # as the end-of-run evaluation
        args.target = condition
        logger.info(f"TSTR on the model's condition column {args.target!r} (--target to choose another).")
    modality, real, samples = _real_and_samples(args, pipe, device)
    options = {
        **vars(args),
        "device": device,
        "output_dir": output_dir,
        "progress": not args.no_progress,
        "dataset_name": args.data,
        "real_test": _load(args.test_data) if args.test_data else None,
    }
    report = modality.score(real, samples, options)
    report.details["source"] = {
        "pipeline": args.pipeline,
        "samples": args.samples,
        "seed": args.seed,
        "num_inference_steps": args.num_inference_steps if args.pipeline else None,
    }
    report.save(args.out)
    print(report.summary())
    print(f"report → {args.out}" + (f"; plots → {output_dir}" if report.artifacts else ""))
    return 0
