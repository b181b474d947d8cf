"""Sample quality vs. steps: DDPM-1000, DDIM and DPM-Solver++ settings on one model, in digits-CNN FID/KID.

    python bench/sampler_quality.py --pipeline runs/digits [--num_samples 1000] [--threads 2]
    python bench/sampler_quality.py --pipeline runs/digits --samplers ddpm-1000,dpmsolver-20,dpmsolver-10
    python bench/sampler_quality.py --pipeline runs/digits --classes cycle  # class-conditional: sample i of class i%K

Every sampler starts from the same $x_T$ (batch `b` draws from `torch.Generator().manual_seed(seed + b)`), so the
differences between rows are the samplers', not the noise draws'. FID and KID are computed against the images the
model was trained on (scikit-learn's 1,797 digits at the UNet's resolution) in the shipped digits-CNN features
(`diffusers_xai.evaluation`); the last column is FID relative to the DDPM-1000 reference row. Generated samples are
cached batch by batch under `--cache_dir`, keyed by the UNet weights, the full scheduler config, the step count, the
batch size and its seed, so a rerun only samples what it has not seen (seconds of cached batches are from the run
that sampled them). On a shared machine, long rows can be sampled in pieces: `--num_samples 250`, then 500, ...

`dpmsolver-N` is exactly what `pipe.set_scheduler("dpmsolver")` / `make_scheduler("dpmsolver")` builds; the
`dpm++-...` rows vary one setting of `DPMSolverMultistepScheduler` at a time to show what each contributes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import torch
from _common import bench_parser
from safetensors.torch import load_file, save_file

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.evaluation import extract_features, frechet_distance, kernel_distance, resolve_feature_extractor
from diffusers_xai.modalities.image import load_digits_tensors
from diffusers_xai.pipelines import make_scheduler

# name -> (scheduler, steps, DPMSolverMultistepScheduler keyword overrides on top of make_scheduler's defaults)
THRESHOLD_OFF = {"thresholding": False}
SAMPLERS: dict[str, tuple[str, int, dict]] = {
    "ddpm-1000": ("ddpm", 1000, {}),
    "ddim-50": ("ddim", 50, {}),
    "ddim-50-trailing": ("ddim", 50, {"timestep_spacing": "trailing"}),
    "dpmsolver-20": ("dpmsolver", 20, {}),
    "dpmsolver-15": ("dpmsolver", 15, {}),
    "dpmsolver-10": ("dpmsolver", 10, {}),
    # one-at-a-time variations of make_scheduler("dpmsolver"), 20 steps
    "dpm++-20-linspace": ("dpmsolver", 20, {"timestep_spacing": "linspace"}),
    "dpm++-20-leading": ("dpmsolver", 20, {"timestep_spacing": "leading"}),
    "dpm++-20-trailing": ("dpmsolver", 20, {"timestep_spacing": "trailing"}),
    "dpm++-20-karras": ("dpmsolver", 20, {"use_karras_sigmas": True}),
    "dpm++-20-exponential": ("dpmsolver", 20, {"use_exponential_sigmas": True}),
    "dpm++-20-lu-lambdas": ("dpmsolver", 20, {"use_lu_lambdas": True}),
    "dpm++-20-order3": ("dpmsolver", 20, {"solver_order": 3}),
    "dpm++-20-order1": ("dpmsolver", 20, {"solver_order": 1}),
    "dpm++-20-heun": ("dpmsolver", 20, {"solver_type": "heun"}),
    "dpm++-20-euler-final": ("dpmsolver", 20, {"euler_at_final": True}),
    "dpm++-20-sigma-min-final": ("dpmsolver", 20, {"final_sigmas_type": "sigma_min"}),
    "dpm++-20-no-lower-order-final": ("dpmsolver", 20, {"lower_order_final": False}),
    "dpm++-20-lambda-min-clipped": ("dpmsolver", 20, {"lambda_min_clipped": -5.1}),
    "dpm++-20-no-threshold": ("dpmsolver", 20, THRESHOLD_OFF),
    "dpm++-20-sde": ("dpmsolver", 20, {"algorithm_type": "sde-dpmsolver++"}),
}
DEFAULT_SAMPLERS = "ddpm-1000,ddim-50,dpmsolver-20,dpmsolver-15,dpmsolver-10"


def weights_digest(pipe: DiffusionXAIPipeline) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(pipe.unet.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def scheduler_key(scheduler) -> dict:
    return {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}


def sample_batch(pipe, steps: int, n: int, seed: int, class_labels: list[int] | None = None) -> torch.Tensor:
    """`n` images in [0, 1] from `torch.Generator().manual_seed(seed)` (of `class_labels`, guidance 1, when given)."""
    generator = torch.Generator().manual_seed(seed)
    kwargs = {"class_labels": class_labels} if class_labels is not None else {}
    return pipe(batch_size=n, generator=generator, num_inference_steps=steps, output_type="pt", **kwargs).images


def batch_labels(pipe, mode: str, start: int, n: int) -> list[int] | None:
    """`--classes`: `null` samples without labels (a class-conditional model's null class, as its end-of-training
    evaluation does); `cycle` gives sample `i` of the run class `i mod K` (no guidance)."""
    if mode == "null":
        return None
    if pipe.num_classes is None:
        raise SystemExit("--classes cycle needs a class-conditional pipeline; this UNet has no class embedding.")
    return [(start + i) % pipe.num_classes for i in range(n)]


def run_sampler(pipe, base_config, name: str, args, digest: str) -> tuple[torch.Tensor, float, int, dict]:
    """
    The sampler's `num_samples` images (batch `b` seeded `seed + b`), each batch loaded from `cache_dir` when an
    earlier run sampled it; returns `(images, seconds over all batches, batches taken from the cache, settings)`.
    """
    kind, steps, overrides = SAMPLERS[name]
    pipe.scheduler = make_scheduler(kind, base_config, **overrides)
    settings = scheduler_key(pipe.scheduler)
    images, seconds, cached = [], 0.0, 0
    for b, start in enumerate(range(0, args.num_samples, args.batch_size)):
        n = min(args.batch_size, args.num_samples - start)
        labels = batch_labels(pipe, args.classes, start, n)
        key = [digest, settings, steps, n, args.seed + b] + ([labels] if labels is not None else [])
        blob = json.dumps(key, sort_keys=True)
        path = os.path.join(args.cache_dir, hashlib.sha256(blob.encode()).hexdigest()[:20] + ".safetensors")
        if os.path.isfile(path):
            entry = load_file(path)
            cached += 1
        else:
            t0 = time.perf_counter()
            batch = sample_batch(pipe, steps, n, args.seed + b, labels)
            entry = {"images": batch.contiguous(), "seconds": torch.tensor(time.perf_counter() - t0).double()}
            os.makedirs(args.cache_dir, exist_ok=True)
            save_file(entry, path + ".tmp")
            os.replace(path + ".tmp", path)
        images.append(entry["images"])
        seconds += float(entry["seconds"])
    return torch.cat(images), seconds, cached, settings


def describe(settings: dict, kind: str) -> str:
    if kind != "dpmsolver":
        return f"{settings.get('timestep_spacing')} spacing"
    keys = ("timestep_spacing", "solver_order", "thresholding", "final_sigmas_type", "lower_order_final")
    parts = [f"{k}={settings[k]}" for k in keys]
    parts += [
        k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_lu_lambdas", "euler_at_final") if settings[k]
    ]
    if settings["algorithm_type"] != "dpmsolver++":
        parts.append(settings["algorithm_type"])
    if settings["solver_type"] != "midpoint":
        parts.append(f"solver_type={settings['solver_type']}")
    if settings["lambda_min_clipped"] != float("-inf"):
        parts.append(f"lambda_min_clipped={settings['lambda_min_clipped']}")
    return " ".join(parts)


def main() -> None:
    parser = bench_parser(__doc__, threads=2)
    parser.add_argument("--pipeline", default="spaces/digits-ddpm", help="a DiffusionXAIPipeline folder")
    parser.add_argument("--samplers", default=DEFAULT_SAMPLERS, help=f"comma-separated, from {sorted(SAMPLERS)}")
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", default=os.path.join(".cache", "sampler_quality"))
    parser.add_argument("--kid_subsets", type=int, default=100)
    parser.add_argument(
        "--classes",
        choices=("null", "cycle"),
        default="null",
        help="class-conditional models: null = unconditional samples (null class); cycle = sample i of class i mod K",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.samplers.split(",") if n.strip()]
    unknown = [n for n in names if n not in SAMPLERS]
    if unknown:
        raise SystemExit(f"Unknown sampler(s) {unknown}; choose from {sorted(SAMPLERS)}.")
    torch.set_num_threads(args.threads)

    pipe = DiffusionXAIPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    base_config = pipe.scheduler.config
    digest = weights_digest(pipe)
    extractor = resolve_feature_extractor("digits-cnn")
    real, _ = load_digits_tensors(pipe.unet.config.sample_size)
    real_f = extract_features((real + 1) / 2, extractor, progress=False).features
    print(
        f"model {args.pipeline} ({base_config.prediction_type}, {base_config.beta_schedule}); {args.num_samples} "
        f"samples per row vs {len(real)} training digits, digits-CNN features; torch threads={args.threads}; "
        f"classes: {args.classes if pipe.num_classes is not None else 'unconditional model'}"
    )
    print(f"{'sampler':<32}{'steps':>6}{'seconds':>10}{'FID':>9}{'KID':>10}{'FID/ref':>9}  settings")
    reference = None
    for name in names:
        try:
            images, seconds, cached, settings = run_sampler(pipe, base_config, name, args, digest)
        except (IndexError, RuntimeError, ValueError) as err:  # e.g. Karras sigmas on a cosine schedule
            print(f"{name:<32}{SAMPLERS[name][1]:>6}  failed: {type(err).__name__}: {err}", flush=True)
            continue
        fake_f = extract_features(images, extractor, progress=False).features
        fid = frechet_distance(real_f, fake_f)
        kid, _ = kernel_distance(real_f, fake_f, subsets=args.kid_subsets, subset_size=len(images), seed=args.seed)
        if name == "ddpm-1000":
            reference = fid
        ratio = f"{fid / reference:.2f}" if reference else "-"
        kind, steps, _ = SAMPLERS[name]
        note = f" ({cached} of {-(-args.num_samples // args.batch_size)} batches cached)" if cached else ""
        print(
            f"{name:<32}{steps:>6}{seconds:>10.1f}{fid:>9.3f}{kid:>10.4f}{ratio:>9}  {describe(settings, kind)}{note}",
            flush=True,
        )


if __name__ == "__main__":
    main()
