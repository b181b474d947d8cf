"""Steps/s of `diffusers_xai.training.train` vs a plain loop written the way diffusers' train_unconditional.py is.

Same model (train/configs/digits.yaml's UNet), data (sklearn digits 16x16), batch, optimizer, LR schedule and
threads, in the same process, alternating A/B rounds so background load hits both alike. Our run keeps its
defaults: EMA every step, tensorboard loss/lr/ema_decay every step, validation grid and checkpoint every 500 steps.
Reported: median over rounds of ours/plain (target >= 1.0: extras cost < 5%), and the measured cost of one
checkpoint save + one validation grid, amortised over the default 500-step interval.

    python bench/train_throughput.py [--steps 100] [--rounds 3] [--threads 2] 2>/dev/null  # (progress bars)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

# On a shared machine, OpenMP's default busy-waiting makes 2 threads 5x slower than 1 (measured: 5.0 s vs 0.97 s
# per step with the machine's other jobs running); passive waiting keeps the comparison about the loops.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from diffusers_xai.modalities.registry import get_modality  # noqa: E402
from diffusers_xai.training import TrainingConfig, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_config(output_dir: str, steps: int, **changes) -> TrainingConfig:
    defaults = TrainingConfig(dataset_name="sklearn-digits")  # the library's default intervals
    return TrainingConfig.from_yaml(
        os.path.join(REPO, "train", "configs", "digits.yaml"),
        {
            "output_dir": output_dir,
            "max_train_steps": steps,
            "max_train_minutes": None,
            "validation_split": 0.0,
            "validation_steps": defaults.validation_steps,
            "checkpointing_steps": defaults.checkpointing_steps,
            "checkpoints_total_limit": None,
            "report_to": "tensorboard",
            "use_ema": True,
            **changes,
        },
    )


def plain_loop(config: TrainingConfig) -> float:
    """diffusers train_unconditional.py's loop (no EMA, no trackers): returns steps/s of the loop alone."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    AcceleratorState._reset_state()
    GradientState._reset_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps, mixed_precision=config.mixed_precision
    )
    set_seed(config.seed)
    modality = get_modality(config.modality)
    dataset = modality.load_dataset(config)
    dataset.set_transform(lambda examples: modality.to_tensors(examples, None, config))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=config.train_batch_size, shuffle=True)
    model = modality.build_model(config, None)
    noise_scheduler = DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_train_steps,
    )
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    progress_bar = tqdm(total=config.max_train_steps, disable=not accelerator.is_local_main_process)
    global_step = 0
    start = time.perf_counter()
    model.train()
    while global_step < config.max_train_steps:
        for batch in dataloader:
            clean_images = batch["x0"]
            noise = torch.randn(clean_images.shape, dtype=clean_images.dtype, device=clean_images.device)
            bsz = clean_images.shape[0]
            timesteps = torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (bsz,), device=clean_images.device
            ).long()
            noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
            with accelerator.accumulate(model):
                model_output = model(noisy_images, timesteps).sample
                loss = F.mse_loss(model_output.float(), noise.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                progress_bar.update(1)
                global_step += 1
            logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0], "step": global_step}
            progress_bar.set_postfix(**logs)
            accelerator.log(logs, step=global_step)
            if global_step >= config.max_train_steps:
                break
    seconds = time.perf_counter() - start
    progress_bar.close()
    accelerator.end_training()
    return global_step / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating plain/ours rounds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    plain, ours, ours_events = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: first-call costs (imports, allocator, dataset build) hit neither timed run
        train(bench_config(os.path.join(tmp, "warmup"), 5, report_to="none"))
        for r in range(args.rounds):
            plain.append(plain_loop(bench_config(os.path.join(tmp, f"plain{r}"), args.steps)))
            ours.append(train(bench_config(os.path.join(tmp, f"ours{r}"), args.steps)).steps_per_second)
            # same run with a checkpoint and a validation grid every steps/2: their cost per event
            half = args.steps // 2
            ours_events.append(
                train(
                    bench_config(
                        os.path.join(tmp, f"events{r}"), args.steps, checkpointing_steps=half, validation_steps=half
                    )
                ).steps_per_second
            )
            print(
                f"round {r}: plain {plain[-1]:.3f} steps/s | ours {ours[-1]:.3f} steps/s | "
                f"ours + 2 checkpoints + 2 grids {ours_events[-1]:.3f} steps/s",
                flush=True,
            )

    ratio = statistics.median(o / p for o, p in zip(ours, plain))
    step_time = 1 / statistics.median(ours)
    event_cost = statistics.median(args.steps / e - args.steps / o for e, o in zip(ours_events, ours)) / 2
    interval = TrainingConfig(dataset_name="sklearn-digits").checkpointing_steps
    amortised = event_cost / (interval * step_time)
    print(
        f"\ntorch threads {args.threads}, {args.steps} steps x {args.rounds} rounds, batch "
        f"{bench_config('x', 1).train_batch_size}, digits 16x16, UNet {list(bench_config('x', 1).block_out_channels)}"
    )
    print(f"plain diffusers-style loop : {statistics.median(plain):.3f} steps/s (median)")
    print(f"train() (EMA + tensorboard): {statistics.median(ours):.3f} steps/s (median)")
    print(f"ratio ours / plain         : {ratio:.3f} (median of per-round ratios; target >= 1.0, extras < 5%)")
    print(
        f"one checkpoint + one validation grid: {event_cost:.2f} s = {100 * amortised:.1f}% of the "
        f"{interval} steps between them at the default interval"
    )


if __name__ == "__main__":
    main()
