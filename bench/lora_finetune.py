"""LoRA vs full fine-tuning of the CIFAR-10-shaped UNet (google/ddpm-cifar10-32's config, random weights, no download).

    python bench/lora_finetune.py [--threads 2] [--batch_size 8] [--steps 4] [--rounds 2] [--rank 8]

For each variant: trainable parameters, the median time of one training step (v-prediction loss, backward, AdamW,
as `diffusers_xai.training` does it) measured round-robin in one process so machine load hits every variant alike,
and memory: the exact bytes of gradients + AdamW state, and the peak RSS of a fresh process that builds the model and
runs the same steps (so the numbers include activations, which LoRA does not shrink).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _common import bench_parser
from diffusers import DDPMScheduler, UNet2DModel

from diffusers_xai.models.lora import add_lora, make_lora_config

# google/ddpm-cifar10-32's unet/config.json (Ho et al. 2020's CIFAR-10 model), ~35.7M parameters
CIFAR10_UNET = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None,
    norm_num_groups=32,
    norm_eps=1e-6,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
)
VARIANTS = {
    "full": None,
    "lora-attention": ("to_q", "to_k", "to_v", "to_out.0"),
    "lora-attention+resnet-convs": ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"),
}


def build(variant: str, rank: int):
    torch.manual_seed(0)
    unet = UNet2DModel(**CIFAR10_UNET).train()
    if VARIANTS[variant] is not None:
        add_lora(unet, make_lora_config(rank, target_modules=VARIANTS[variant]))
    params = [p for p in unet.parameters() if p.requires_grad]
    return unet, torch.optim.AdamW(params, lr=1e-4)


def train_step(unet, optimizer, scheduler, batch_size: int, generator) -> None:
    x0 = torch.rand(batch_size, 3, 32, 32, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
    x_t = scheduler.add_noise(x0, noise, t)
    loss = F.mse_loss(unet(x_t, t).sample, scheduler.get_velocity(x0, noise, t))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)  # keep the gradient buffers, so they count in the state below


def state_bytes(unet, optimizer) -> int:
    grads = sum(p.grad.numel() * p.grad.element_size() for p in unet.parameters() if p.grad is not None)
    states = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    adam = sum(t.numel() * t.element_size() for t in states)
    return grads + adam


def child(args) -> None:
    """One variant in a fresh process: build, run `--steps` steps, print peak RSS as JSON."""
    torch.set_num_threads(args.threads)
    unet, optimizer = build(args.child, args.rank)
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        train_step(unet, optimizer, scheduler, args.batch_size, generator)
    print(json.dumps({"peak_rss_mib": peak_rss_kib() / 1024, "state_mib": state_bytes(unet, optimizer) / 2**20}))


def peak_rss_kib() -> float:
    """This process's peak RSS. On Linux `VmHWM` of /proc/self/status: `getrusage`'s `ru_maxrss` is inherited over
    fork and kept across exec, so a child of this (multi-GiB) benchmark would report the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    parser = bench_parser(__doc__, threads=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)

    models = {name: build(name, args.rank) for name in VARIANTS}
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    generator = torch.Generator().manual_seed(0)
    times = {name: [] for name in VARIANTS}
    for unet, optimizer in models.values():  # warm-up: allocates AdamW state
        train_step(unet, optimizer, scheduler, args.batch_size, generator)
    for _ in range(args.rounds):  # round-robin, so load from other processes hits every variant alike
        for name, (unet, optimizer) in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                train_step(unet, optimizer, scheduler, args.batch_size, generator)
            times[name].append((time.perf_counter() - start) / args.steps)

    total = sum(p.numel() for p in models["full"][0].parameters())
    print(
        f"CIFAR-10-shaped UNet2DModel, {total / 1e6:.1f}M parameters, 32x32x3, batch {args.batch_size}, "
        f"LoRA rank {args.rank}, torch threads={args.threads}, {args.rounds} rounds x {args.steps} steps"
    )
    header = f"{'variant':<30}{'trainable':>12}{'share':>8}{'s/step':>9}{'vs full':>9}{'grad+Adam MiB':>15}"
    print(header + f"{'peak RSS MiB':>14}")
    full_time = statistics.median(times["full"])
    for name, (unet, optimizer) in models.items():
        trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
        step = statistics.median(times[name])
        command = [sys.executable, __file__, "--child", name, "--rank", str(args.rank), "--threads", str(args.threads)]
        command += ["--batch_size", str(args.batch_size), "--steps", "2"]
        measured = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        print(
            f"{name:<30}{trainable:>12,}{trainable / total:>8.2%}{step:>9.2f}{step / full_time:>9.2f}"
            f"{state_bytes(unet, optimizer) / 2**20:>15.1f}{measured['peak_rss_mib']:>14.0f}"
        )


if __name__ == "__main__":
    main()
