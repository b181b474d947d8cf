"""Throughput of sharded dataset generation on CPU.

1. Processes: samples/s of `generate_dataset` on 1 process x 2 threads vs 2 processes x 1 thread (the same total
   thread count; 1 process x 1 thread for reference), the 2 processes started with `accelerate launch
   --config_file train/configs/accelerate/multi_cpu.yaml`. Timed inside the workers between two barriers, so
   interpreter start-up is excluded (it is reported separately as the launch wall time).
2. Explanations: in one process, the stock pipeline loop (the same samples, nothing written) vs `generate_dataset`
   without and with per-sample explanation summaries, round-robin, median of `--repeats`.

    python bench/generate_throughput.py [--num_samples 64] [--sample_size 16] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MULTI_CPU = REPO / "train" / "configs" / "accelerate" / "multi_cpu.yaml"


def build_pipeline(sample_size: int):
    from diffusers_xai.testing import tiny_pipeline

    return tiny_pipeline("ddpm", sample_size=sample_size)


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from diffusers_xai.generation import distributed_state, generate_dataset

    pipe = build_pipeline(args.sample_size)
    state = distributed_state()
    state.wait_for_everyone()
    start = time.perf_counter()
    generate_dataset(
        pipe,
        args.out,
        args.num_samples,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        num_inference_steps=args.steps,
        state=state,
    )
    seconds = time.perf_counter() - start
    if state.is_main_process:
        print("RESULT " + json.dumps({"processes": state.num_processes, "threads": args.threads, "seconds": seconds}))


def run_worker(args, processes: int, threads: int, out: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    common = [str(Path(__file__).resolve()), "--worker", "--threads", str(threads), "--out", out]
    common += ["--num_samples", str(args.num_samples), "--shard_size", str(args.shard_size)]
    common += [
        "--batch_size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--sample_size",
        str(args.sample_size),
    ]
    if processes == 1:
        cmd = [sys.executable, *common]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(MULTI_CPU), *common]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return {**json.loads(line[len("RESULT ") :]), "wall": wall}


def explanation_cost(args) -> dict[str, float]:
    import torch

    from diffusers_xai.generation import generate_dataset

    torch.set_num_threads(args.threads_in_process)
    os.environ["TQDM_DISABLE"] = "1"  # 3 x 3 timed runs: keep the table readable
    pipe = build_pipeline(args.sample_size)
    pipe.set_progress_bar_config(disable=True)
    n = args.num_samples

    def stock():
        for start in range(0, n, args.batch_size):
            gens = [torch.Generator().manual_seed(i) for i in range(start, min(start + args.batch_size, n))]
            pipe(batch_size=len(gens), generator=gens, num_inference_steps=args.steps, output_type="pil")

    def sharded(explain: bool):
        with tempfile.TemporaryDirectory() as tmp:
            generate_dataset(
                pipe,
                tmp,
                n,
                shard_size=args.shard_size,
                batch_size=args.batch_size,
                num_inference_steps=args.steps,
                explain=explain,
            )

    runs = {"stock pipeline loop": stock, "generate_dataset": lambda: sharded(False)}
    runs["generate_dataset --explain"] = lambda: sharded(True)
    times: dict[str, list[float]] = {name: [] for name in runs}
    stock()  # warm-up
    for _ in range(args.repeats):  # round-robin, so drifting load on a shared machine hits every variant alike
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_samples", type=int, default=64)
    parser.add_argument("--shard_size", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sample_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads_in_process", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    print(
        f"{args.num_samples} samples, {args.sample_size}x{args.sample_size} tiny UNet, {args.steps} DDPM steps, "
        f"shards of {args.shard_size}, batches of {args.batch_size}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes, threads in ((1, 2), (2, 1), (1, 1)):
            results.append(run_worker(args, processes, threads, os.path.join(tmp, f"{processes}x{threads}")))
    base = results[0]
    print("\n1. processes (same total thread count)")
    print(f"{'setup':<26}{'samples/s':>10}{'gen s':>8}{'launch wall s':>15}{'speed-up':>10}")
    for r in results:
        rate = args.num_samples / r["seconds"]
        setup = f"{r['processes']} process x {r['threads']} thread"
        speedup = base["seconds"] / r["seconds"]
        print(f"{setup:<26}{rate:>10.2f}{r['seconds']:>8.2f}{r['wall']:>15.1f}{speedup:>9.2f}x")

    times = explanation_cost(args)
    stock = times["stock pipeline loop"]
    print(f"\n2. explanation summaries (1 process, {args.threads_in_process} thread, median of {args.repeats})")
    print(f"{'path':<28}{'samples/s':>10}{'s':>8}{'vs stock':>10}")
    for name, seconds in times.items():
        print(f"{name:<28}{args.num_samples / seconds:>10.2f}{seconds:>8.2f}{seconds / stock:>9.2f}x")


if __name__ == "__main__":
    main()
