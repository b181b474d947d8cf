"""Cost of every explanation method relative to one plain sampling run of the same model.

Explaining K steps should cost about K forward+backward passes of the denoiser, not a re-sample. This script samples
once without a trace (the stock path), once with a trace, then times each method on K recorded steps of one sample
and prints its time as a ratio to the plain sampling run and to K forward+backward passes.

    OMP_NUM_THREADS=1 python bench/explain_cost.py --threads 1 --steps 50 --explained-steps 3
"""

from __future__ import annotations

import statistics
import time

import torch
from _common import bench_parser
from diffusers import UNet2DModel

from diffusers_xai import DiffusionXAIPipeline, TraceConfig
from diffusers_xai.explain import (
    AttentionExplainer,
    DenoiserAttribution,
    DenoiserGradCAM,
    DenoiserShap,
    analyze_trajectory,
    deletion_insertion,
    model_randomization_check,
    random_map_curves,
    select_sample,
)


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--steps", type=int, default=50, help="num_inference_steps of the sampling run")
    parser.add_argument("--explained-steps", type=int, default=3, help="K recorded steps explained per method")
    parser.add_argument("--sample-size", type=int, default=16)
    parser.add_argument("--channels", type=int, nargs=2, default=(32, 64), help="block_out_channels of the UNet")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported) after one warm-up")
    parser.add_argument("--partition", action="store_true", help="also time shap's Partition explainer (numba JIT)")
    return parser.parse_args(argv)


def build_pipeline(args) -> DiffusionXAIPipeline:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=args.sample_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=tuple(args.channels),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    ).eval()
    pipe = DiffusionXAIPipeline.from_unet(unet, "ddim", num_train_timesteps=1000)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy imports)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(args) -> None:
    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args)
    k = args.explained_steps

    def sample(trace=None):
        generator = torch.Generator().manual_seed(0)
        return pipe(num_inference_steps=args.steps, output_type="pt", trace=trace, generator=generator)

    plain = timed(sample, args.repeats)
    traced = timed(lambda: sample(TraceConfig(attention=True)), args.repeats)
    out = sample(TraceConfig(attention=True))
    trace = select_sample(out.trace, 0)
    recorded = trace.timesteps.tolist()
    timesteps = [recorded[round(i * (len(recorded) - 1) / (k - 1))] for i in range(k)] if k > 1 else [recorded[0]]

    # one forward+backward pass of the explained target: the unit an explanation should cost K of
    forward = DenoiserGradCAM(pipe).forward_function().bind(["sample"], [], timesteps[0])
    x = trace.step(trace.step_indices[0]).latents.float()

    def forward_backward():
        xg = x.detach().requires_grad_(True)
        torch.autograd.grad(forward(xg).sum(), xg)

    unit = timed(forward_backward, args.repeats)

    gradcam = DenoiserGradCAM(pipe)
    ts = {"timesteps": timesteps}

    def attribution(method: str, **kwargs):
        return lambda: DenoiserAttribution(pipe, method).attribute(trace, **ts, **kwargs)

    methods = {
        "trajectory": lambda: analyze_trajectory(trace, pipe.scheduler),
        "attention (from trace)": lambda: AttentionExplainer(pipe).attribute(trace, **ts),
        "attention (recomputed)": lambda: AttentionExplainer(pipe).with_model(pipe.unet).attribute(trace, **ts),
        "gradcam (5 blocks, 1 pass)": lambda: gradcam.attribute(trace, **ts),
        "gradcam (mid_block, captum)": lambda: DenoiserGradCAM(pipe, "mid_block").attribute(trace, **ts),
        "saliency": attribution("saliency"),
        "input_x_gradient": attribution("input_x_gradient"),
        "integrated_gradients (n=32)": attribution("integrated_gradients", n_steps=32),
        "gradient_shap (n=16)": attribution("gradient_shap", n_samples=16),
        "occlusion (64 windows)": attribution("occlusion"),
        "shap GradientExplainer (n=64)": lambda: DenoiserShap(pipe).attribute(trace, **ts, nsamples=64),
    }
    if args.partition:
        methods["shap Partition (256 evals)"] = lambda: DenoiserShap(pipe, "partition").attribute(
            trace, **ts, max_evals=256
        )
    cam = gradcam.attribute(trace, timesteps=timesteps)
    curves = random_map_curves(forward, x)
    methods["faithfulness: random-map curves (8 maps)"] = lambda: random_map_curves(forward, x)
    methods["faithfulness of 1 map (16-step curves)"] = lambda: deletion_insertion(
        forward, x, cam.maps[0], random_curves=curves
    )
    methods["sanity check gradcam (2 x K steps)"] = lambda: model_randomization_check(gradcam, trace, **ts)

    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, UNet {tuple(args.channels)} at "
        f"{args.sample_size}x{args.sample_size}, {args.steps} DDIM steps, K={k} explained steps {timesteps}"
    )
    print(f"plain sampling run (stock path, no trace): {plain:.3f} s")
    print(f"traced sampling run (latents, x0, attention): {traced:.3f} s  ({traced / plain:.2f}x plain)")
    print(f"one forward+backward of the target: {unit * 1000:.1f} ms (K of them = {k * unit / plain:.3f}x plain)")
    print(f"{'method':46s} {'seconds':>9s} {'x plain run':>12s} {'x K fwd+bwd':>12s}")
    for name, fn in methods.items():
        seconds = timed(fn, args.repeats)
        print(f"{name:46s} {seconds:9.3f} {seconds / plain:12.3f} {seconds / (k * unit):12.2f}")


if __name__ == "__main__":
    main(parse_args())
