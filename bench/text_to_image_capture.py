"""Cost of word maps on stock text-to-image pipelines: TextToImageExplainer vs the stock call, same model, same run.

    python bench/text_to_image_capture.py [--threads 2] [--steps 10] [--size 32] [--repeats 5]

For each tiny stock pipeline (SD, SDXL, SD3, Flux, PixArt; diffusers_xai.testing_text_to_image) it times, round-robin
over `--repeats`, (a) the stock `pipe(prompt, ...)`, (b) `TextToImageExplainer(pipe).attribute(prompt, trace=False)`
(capture + word maps at every step) and (c) the same with the latent trace callback, and prints the median times and
the median over rounds of each round's ratio to the stock call (one round runs the three back to back, so a ratio
survives load changing over the run; target <= 1.3x with maps at every step). Then, in fresh subprocesses, the peak
resident memory of recomputing the image->text block of one joint attention call (Flux-like, 4096 image + 512 text
tokens, 8 heads of 128) with 64 MiB chunks vs in one piece.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import torch
from _common import bench_parser

from diffusers_xai.explain.text_to_image import TextToImageExplainer
from diffusers_xai.testing_text_to_image import TEXT_TO_IMAGE_FAMILIES, tiny_call_kwargs, tiny_text_to_image_pipeline

PROMPT = "a red kitten on the grass"

_MEMORY_SNIPPET = """
import resource, sys, torch
from diffusers_xai.capture.query_key import QueryKey, chunked_attention_probabilities
torch.manual_seed(0)
heads, n_image, n_text, d = 8, 4096, 512, 128
q = torch.randn(1, heads, n_text + n_image, d)
k = torch.randn(1, heads, n_text + n_image, d)
image = slice(n_text, None)
qk = QueryKey(q, k, d ** -0.5, None, image, image, slice(0, n_text))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
p = chunked_attention_probabilities(qk, "image", "text", max_chunk_bytes=int(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, p.numel() * 4 / 2**20)
"""


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_family(family: str, steps: int, size: int, repeats: int) -> dict[str, float]:
    pipe = tiny_text_to_image_pipeline(family)
    explainer = TextToImageExplainer(pipe)

    def kwargs():
        return tiny_call_kwargs(family, num_inference_steps=steps, height=size, width=size, guidance_scale=4.0)

    variants = {
        "stock": lambda: pipe(PROMPT, **kwargs()),
        "maps": lambda: explainer.attribute(PROMPT, trace=False, **kwargs()),
        "maps+trace": lambda: explainer.attribute(PROMPT, **kwargs()),
    }
    for fn in variants.values():  # warm-up
        fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(_time(fn))
    out = {name: statistics.median(ts) for name, ts in times.items()}
    # the ratio of each round's times (the variants of one round ran back to back, under the same load), median
    for name in ("maps", "maps+trace"):
        out[f"{name} ratio"] = statistics.median(a / b for a, b in zip(times[name], times["stock"]))
    return out


def peak_memory(max_chunk_bytes: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SNIPPET, str(max_chunk_bytes)], capture_output=True, text=True, check=True
    )
    peak, result = out.stdout.split()
    return float(peak), float(result)


def main() -> None:
    parser = bench_parser(__doc__, threads=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=32, help="image height = width (pixels)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--families", nargs="+", default=list(TEXT_TO_IMAGE_FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch threads={args.threads} steps={args.steps} image={args.size}x{args.size} guidance=4.0 (CFG batch) "
        f"repeats={args.repeats} (round-robin; median times, median of per-round ratios)"
    )
    print(f"{'family':8s} {'stock s':>9s} {'maps s':>9s} {'ratio':>6s} {'+trace s':>9s} {'ratio':>6s}")
    for family in args.families:
        t = bench_family(family, args.steps, args.size, args.repeats)
        print(
            f"{family:8s} {t['stock']:9.3f} {t['maps']:9.3f} {t['maps ratio']:5.2f}x "
            f"{t['maps+trace']:9.3f} {t['maps+trace ratio']:5.2f}x"
        )
    print("\npeak RSS of one image->text recomputation (4096 image + 512 text tokens, 8 heads of 128):")
    for label, chunk in (("64 MiB chunks", 2**26), ("one piece", 2**40)):
        peak, result = peak_memory(chunk)
        print(f"  {label:14s} peak +{peak:7.1f} MiB (result itself {result:.1f} MiB)")


if __name__ == "__main__":
    main()
