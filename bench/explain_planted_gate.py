"""Where does the class act? "Why this class" attributed to a spatial gate on the class embedding, not to x_t.

A second reading of the planted image check of issue 13 (`bench/explain_planted_images.py` is the first): instead
of asking which pixels of x_t the class's contribution depends on, ask *where in the network's feature maps* the
class has to act for its contribution to appear. The planted model ([`planted_image_model`]) is run with the null
class; a gate g `[B, 1, H, W]` adds, at every `ResnetBlock2D`, g (resized to the block's resolution) times the
difference the class makes to the block's time-embedding term, time_emb_proj(act(emb_c)) - time_emb_proj(act(emb_0)),
to the block's conv1 output. g = 1 everywhere is exactly the class-conditional model (the script prints the largest
difference), g = 0 the null model. The target is the signed sum of x0_hat(g) - x0_hat(null) (the benchmark's), and
captum's Saliency, IntegratedGradients (baseline g = 0), Occlusion (2x2 patches set to 0) and GradientShap (uniform
random gates) attribute it to g; the score is the pointing game of |map| in the class's corner, as in the benchmark.

    OMP_NUM_THREADS=1 python bench/explain_planted_gate.py --fit-steps 400
"""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from _common import bench_parser
from captum.attr import GradientShap, IntegratedGradients, Occlusion, Saliency
from diffusers.models.resnet import ResnetBlock2D

from diffusers_xai.explain.planted import planted_images, pointing_game
from diffusers_xai.testing import planted_image_model


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--fit-steps", type=int, default=400, help="training steps of the planted model")
    parser.add_argument("--samples", type=int, default=64, help="held-out marked planted images per step")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[740, 500, 240])
    return parser.parse_args(argv)


@contextlib.contextmanager
def class_gate(unet, gate: torch.Tensor, t: int, labels: torch.Tensor, null_class: int):
    """Forward hooks (removed on exit) adding gate x (the class's time-embedding term minus the null's) to each
    `ResnetBlock2D`'s conv1 output; the model must be called with the null class inside the context."""
    t_emb = unet.time_embedding(unet.time_proj(torch.full((labels.shape[0],), t)))
    emb_c, emb_0 = (
        t_emb + unet.class_embedding(labels),
        t_emb + unet.class_embedding(torch.full_like(labels, null_class)),
    )
    handles = []
    try:
        for block in (m for m in unet.modules() if isinstance(m, ResnetBlock2D)):
            project = lambda emb, b=block: b.time_emb_proj(b.nonlinearity(emb))[:, :, None, None]  # noqa: E731
            delta = project(emb_c) - project(emb_0)

            def hook(module, inputs, out, delta=delta):
                g = (
                    gate
                    if gate.shape[-2:] == out.shape[-2:]
                    else F.interpolate(gate, size=out.shape[-2:], mode="bilinear")
                )
                return out + g * delta

            handles.append(block.conv1.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def gate_scores(unet, scheduler, x_t: torch.Tensor, t: int, labels: torch.Tensor, truth: torch.Tensor) -> dict:
    null = torch.full_like(labels, 4)
    ab = scheduler.alphas_cumprod[t]
    b_t = -((1 - ab) ** 0.5) / ab**0.5  # x0_hat = x_t / sqrt(ab) + b_t eps_hat: x_t cancels in the contrast
    with torch.no_grad():
        eps_null = unet(x_t, t, class_labels=null).sample
        with class_gate(unet, torch.ones_like(x_t), t, labels, 4):
            eps_gate1 = unet(x_t, t, class_labels=null).sample
        row = {"|gate 1 - conditional|": float((eps_gate1 - unet(x_t, t, class_labels=labels).sample).abs().max())}

    def target(gate: torch.Tensor) -> torch.Tensor:
        n = gate.shape[0] // x_t.shape[0]  # captum batches several gates per sample
        with class_gate(unet, gate, t, labels.repeat(n), 4):
            eps = unet(x_t.repeat(n, 1, 1, 1), t, class_labels=null.repeat(n)).sample
        return (b_t * (eps - eps_null.repeat(n, 1, 1, 1))).flatten(1).sum(1)

    ones = torch.ones_like(x_t)
    random_gates = torch.rand(16, *x_t.shape[1:], generator=torch.Generator().manual_seed(0))
    maps = {
        "saliency": Saliency(target).attribute(ones.clone().requires_grad_(), abs=True),
        "integrated_gradients": IntegratedGradients(target).attribute(ones, baselines=0.0, n_steps=32),
        "occlusion": Occlusion(target).attribute(ones, sliding_window_shapes=(1, 2, 2), strides=(1, 2, 2)),
        "gradient_shap": GradientShap(target).attribute(ones, baselines=random_gates, n_samples=16),
    }
    for name, m in maps.items():
        row[name] = round(float(pointing_game(m.detach()[:, 0].abs(), truth).float().mean()), 3)
    return row


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    unet, scheduler, _ = planted_image_model(16, (8, 16), num_steps=args.fit_steps)
    unet.requires_grad_(False)
    test = planted_images(args.samples, 16, seed=1)
    truth = test.regions[test.class_labels]
    rows = {}
    for t in args.timesteps:
        start = time.perf_counter()
        noise = torch.randn(test.images.shape, generator=torch.Generator().manual_seed(0))
        x_t = scheduler.add_noise(test.images, noise, torch.tensor([t]))
        rows[t] = gate_scores(unet, scheduler, x_t, t, test.class_labels, truth)
        print(t, rows[t], f"{time.perf_counter() - start:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    main()
