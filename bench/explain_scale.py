"""Faithfulness at scale: one explained sample, every default map method and all checks, on a real-size UNet.

The model is the CIFAR-10-shaped `UNet2DModel` of DDPM (32x32x3, block_out_channels (128, 256, 256, 256), two
layers per block, attention at 16x16: 35.7M parameters), built from its config with random weights (nothing is
downloaded), v-prediction as the main job trains. One sample is generated with a trace (DDIM), then for each method:

- attribute: the maps at K evenly spaced recorded steps (`--explained-steps`);
- faithfulness: deletion/insertion curves with fresh-noise replacement at each step's noise level
  ([`faithfulness_curves`], every perturbed input batched, `--batch-size` at a time);
- randomisation: the cascade from the output layers inwards and full ([`cascading_randomization`], `--max-stages`
  stages at the middle explained step).

The random-map curves depend only on the inputs, so they are computed once and shared by every method (printed as
"shared"; the per-method total adds an equal share). The bootstrap CI of the gains needs >= 8 samples x steps, which
one sample x K steps is not; its cost is printed separately (it is the same 2,000 resamples in
bench/explain_faithfulness.py's 32 x 3 run). Seconds are wall time on this machine; the check is < 60 s per method.

    OMP_NUM_THREADS=2 python bench/explain_scale.py --threads 2
"""

from __future__ import annotations

import json
import time

import torch
from _common import bench_parser
from diffusers import UNet2DModel

from diffusers_xai import DiffusionXAIPipeline, TraceConfig
from diffusers_xai.explain import (
    bootstrap_ci,
    build_explainer,
    cascading_randomization,
    faithfulness_curves,
    select_sample,
)

CIFAR10_UNET = {  # google/ddpm-cifar10-32's config
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 256, 256),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
}
# per-method attribute() keywords of the timed run; the explainers are built as the card builds them
# (`build_explainer`: IG from fresh noise, GradCAM as HiResCAM of the last up block)
METHODS = {
    "attention": {},
    "gradcam": {"relu_attributions": True},
    "saliency": {},
    "integrated_gradients": {"n_steps": 8, "internal_batch_size": 8},
    "occlusion": {"sliding_window_shapes": (3, 8, 8), "strides": (3, 8, 8)},
    "shap": {"nsamples": 8},
}


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=2)
    parser.add_argument("--steps", type=int, default=20, help="num_inference_steps of the traced sampling run")
    parser.add_argument("--explained-steps", type=int, default=3, help="K recorded steps explained per method")
    parser.add_argument("--curve-steps", type=int, default=8, help="deletion/insertion curve resolution")
    parser.add_argument("--n-random", type=int, default=4, help="random maps per step (shared by the methods)")
    parser.add_argument("--max-stages", type=int, default=3, help="cascade stages incl. the full randomisation")
    parser.add_argument("--batch-size", type=int, default=32, help="perturbed inputs per forward pass")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--tiny", action="store_true", help="a 2-level toy UNet instead (checks the script runs)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def build_pipeline(tiny: bool) -> DiffusionXAIPipeline:
    torch.manual_seed(0)
    config = dict(CIFAR10_UNET)
    if tiny:
        config.update(block_out_channels=(32, 64), down_block_types=config["down_block_types"][:2])
        config.update(up_block_types=config["up_block_types"][2:], norm_num_groups=8)
    unet = UNet2DModel(**config).eval()
    pipe = DiffusionXAIPipeline.from_unet(unet, "ddim", num_train_timesteps=1000, prediction_type="v_prediction")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evenly(items: list, k: int) -> list:
    return (
        [items[round(i * (len(items) - 1) / max(1, k - 1))] for i in range(k)] if k > 1 else [items[len(items) // 2]]
    )


def time_method(pipe, trace, method: str, timesteps: list[int], args, cache: dict) -> dict:
    explainer, kwargs = build_explainer(pipe, method, "image"), dict(METHODS[method])
    seconds = {}
    start = time.perf_counter()
    result = explainer.attribute(trace, timesteps=timesteps, **kwargs)
    seconds["attribute"] = time.perf_counter() - start
    start = time.perf_counter()
    before = len(cache)
    _, per_step = faithfulness_curves(
        explainer, trace, timesteps, result, curve_steps=args.curve_steps, n_random=args.n_random,
        batch_size=args.batch_size, random_curves_cache=cache, **kwargs,
    )  # fmt: skip
    seconds["faithfulness"] = time.perf_counter() - start
    mid = [timesteps[len(timesteps) // 2]]
    start = time.perf_counter()
    check = cascading_randomization(
        explainer, trace, mid, max_stages=args.max_stages, reference_maps=result.maps[[len(timesteps) // 2]], **kwargs
    )
    seconds["randomization"] = time.perf_counter() - start
    return {
        "seconds": seconds,
        "computed_random_curves": len(cache) > before,
        "deletion_gain_per_step": [round(float(r.deletion_gain.mean()), 4) for r in per_step],
        "insertion_gain_per_step": [round(float(r.insertion_gain.mean()), 4) for r in per_step],
        "spearman_per_stage": dict(zip(check.stages, [round(v, 4) for v in check.spearman])),
    }


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args.tiny)
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    start = time.perf_counter()
    out = pipe(
        batch_size=1, generator=torch.Generator().manual_seed(0), num_inference_steps=args.steps,
        trace=TraceConfig(attention=True), output_type="pt",
    )  # fmt: skip
    sampling = time.perf_counter() - start
    trace = select_sample(out.trace, 0)
    timesteps = evenly([s.timestep for s in trace.steps if s.latents is not None], args.explained_steps)
    cache: dict = {}
    rows = {m: time_method(pipe, trace, m, timesteps, args, cache) for m in args.methods}
    # the random curves were computed inside the first method's faithfulness time: move them to "shared"
    first = next(m for m, r in rows.items() if r["computed_random_curves"])
    others = [r["seconds"]["faithfulness"] for m, r in rows.items() if m != first]
    shared = rows[first]["seconds"]["faithfulness"] - (sum(others) / len(others) if others else 0.0)
    rows[first]["seconds"]["faithfulness"] -= shared
    start = time.perf_counter()
    bootstrap_ci(torch.randn(96), n_boot=2000)  # 32 samples x 3 steps, as the benchmark's CI
    bootstrap = time.perf_counter() - start
    print(f"UNet2DModel {n_params / 1e6:.1f}M parameters, {args.threads} threads; sampling {args.steps} steps "
          f"{sampling:.1f} s; explained timesteps {timesteps}")  # fmt: skip
    print(f"shared random-map curves ({args.n_random} maps x {len(timesteps)} steps): {shared:.1f} s; "
          f"bootstrap CI of 96 gains: {bootstrap * 1000:.1f} ms")  # fmt: skip
    print(f"{'method':22s} {'attribute':>9s} {'faithful':>9s} {'random.':>9s} {'total':>7s} {'+share':>7s}  < 60 s")
    for method, row in rows.items():
        s = row["seconds"]
        total = sum(s.values())
        with_share = total + shared / len(rows)
        row["total"], row["total_with_shared"] = round(total, 2), round(with_share, 2)
        print(f"{method:22s} {s['attribute']:9.1f} {s['faithfulness']:9.1f} {s['randomization']:9.1f} "
              f"{total:7.1f} {with_share:7.1f}  {'yes' if with_share < 60 else 'NO'}")  # fmt: skip
    summary = {
        "parameters": n_params, "threads": args.threads, "timesteps": timesteps, "sampling_seconds": sampling,
        "shared_random_curves_seconds": shared, "bootstrap_seconds": bootstrap, "methods": rows,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
    }  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2, default=str)
    return summary


if __name__ == "__main__":
    main(parse_args())
