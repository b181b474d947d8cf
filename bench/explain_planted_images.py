"""Does "why this class" point at the planted corner? The image planted check of issue 13, dissected per step.

`bench/explain_faithfulness.py` scores each image method's "why this class" map ([`ConditionTarget`]: the class's
contribution to x0_hat, conditional minus unconditional) by the pointing game against the corner whose mark encodes
the class ([`planted_images`]). This script asks, per step, whether the question can be answered at all and which
method answers it, on the benchmark's planted model family ([`planted_image_model`]):

- `contrast`: the map that *defines* the answer, the contrast Delta = x0_hat(x_t, c) - x0_hat(x_t, null) itself
  ([`ConditionContrast`], no attribution). If its peak misses the corner, no attribution of it can hit.
- per method and target reduction (`sum`: the signed sum of Delta, the library's default and the benchmark's; `sq`:
  0.5 ||Delta||^2): the method's map of that target w.r.t. x_t, built with the card's constructor settings
  (`IMAGE_INIT_DEFAULTS`) and the library's default `attribute()` keywords (as the benchmark's planted check calls
  them).
- per map, the mean |map| in the class's corner over that in the centre (`corner_to_centre_mass`): where the map's
  weight lies, next to where its single largest pixel lies.
- two kinds of x_t: `marked`, forward-diffused held-out planted images (as the benchmark does), and `unmarked`, the
  same images with the mark erased.
- `--null-images`: what the null class was trained on. `unmarked` (the default, the benchmark's): the digits
  without any mark, so the class is the only source of the mark. `marked`: classic label dropout on the marked
  images, the earlier design, where the null prediction reads the mark off a marked x_t and Delta vanishes there.

    OMP_NUM_THREADS=1 python bench/explain_planted_images.py --fit-steps 400 --kinds marked --reductions sum
    OMP_NUM_THREADS=1 python bench/explain_planted_images.py --fit-steps 2000 --null-images marked  # the old design
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import torch
from _common import bench_parser
from explain_faithfulness import PLANTED_IMAGE_CHANNELS

from diffusers_xai.explain import build_explainer, planted
from diffusers_xai.explain.condition import ConditionContrast, ConditionTarget
from diffusers_xai.testing import planted_image_model

METHODS = ("saliency", "integrated_gradients", "occlusion", "shap", "gradcam", "attention")


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--fit-steps", type=int, default=2000, help="training steps of the planted model")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument(
        "--channels",
        nargs=2,
        type=int,
        default=list(PLANTED_IMAGE_CHANNELS),
        help="block widths over 8 GroupNorm groups (the benchmark's 16 32; 8 16: the earlier model, whose last up "
        "block has one channel per group, where GradCAM's weights vanish)",
    )
    parser.add_argument("--samples", type=int, default=64, help="held-out planted images per step")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[740, 500, 240])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--null-images", default="unmarked", choices=["unmarked", "marked"],
        help="what the null class is trained on: the digits without the mark (default) or the marked images",
    )  # fmt: skip
    parser.add_argument("--kinds", nargs="+", default=["marked", "unmarked"], choices=["marked", "unmarked"])
    parser.add_argument("--reductions", nargs="+", default=["sum", "sq"], choices=["sum", "sq"])
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def explainer(model, method: str, target: ConditionTarget):
    """`method` built as the card and the benchmark build it ([`build_explainer`]: IG's fresh-noise baseline,
    GradCAM as HiResCAM of the last up block), explaining `target` (attention: the class-conditioned pass's maps)."""
    return build_explainer(model, method, "image", target)


def pointing(maps: torch.Tensor, truth: torch.Tensor) -> float:
    maps = maps.float().abs()[0]
    return round(float(planted.pointing_game(maps.reshape(truth.shape), truth).mean()), 3)


def mass_ratio(maps: torch.Tensor, truth: torch.Tensor, centre: torch.Tensor) -> float:
    """Mean |map| per pixel in the class's corner over that in the centre (outside every corner): > 1 when the
    map puts more weight on the mark's pixels, even when its single largest pixel falls elsewhere."""
    maps = maps.float().abs()[0].reshape(truth.shape)
    own = (maps * truth).flatten(1).sum(1) / truth.flatten(1).sum(1)
    rest = (maps * centre).flatten(1).sum(1) / centre.sum()
    return round(float((own / rest.clamp_min(1e-12)).mean()), 2)


def step_rows(model, x_t: torch.Tensor, t: int, test, args) -> tuple[dict, dict]:
    """Pointing game of the contrast and of each method's map at one step, and each map's corner/centre mass."""
    truth, null, centre = test.regions[test.class_labels], test.num_classes, ~test.regions.any(0)
    squared = lambda delta: 0.5 * delta.pow(2).flatten(1).sum(1)  # noqa: E731
    contrast = ConditionContrast(model, null_class=null).attribute(x_t, [t], class_labels=test.class_labels)
    row, mass = {"contrast": pointing(contrast.maps, truth)}, {"contrast": mass_ratio(contrast.maps, truth, centre)}
    for method in args.methods:
        for reduction in args.reductions if method != "attention" else ["sum"]:  # attention takes no target
            target = ConditionTarget(null_class=null, fn=squared if reduction == "sq" else None)
            # the benchmark's planted call (`recover_class_region`): library default keywords
            maps = planted._maps(explainer(model, method, target), x_t, [t], target, class_labels=test.class_labels)
            maps = maps[:, :, :1] if maps.ndim == 5 else maps  # attention: the first token's map
            row[f"{method}/{reduction}"] = pointing(maps, truth)
            mass[f"{method}/{reduction}"] = mass_ratio(maps, truth, centre)
    return row, mass


def print_table(title: str, rows: dict) -> None:
    columns = list(next(iter(rows.values())))
    print(f"\n{title}\n| x_t | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    unet, scheduler, _ = planted_image_model(
        args.resolution, tuple(args.channels), num_steps=args.fit_steps, seed=args.seed, null_images=args.null_images
    )
    print(f"planted model fitted in {time.perf_counter() - start:.0f} s ({args.fit_steps} steps)", flush=True)
    test = planted.planted_images(args.samples, args.resolution, seed=args.seed + 1)
    x0s = {kind: {"marked": test.images, "unmarked": test.unmarked}[kind] for kind in args.kinds}
    model = SimpleNamespace(unet=unet, scheduler=scheduler)
    rows, masses = {}, {}
    for kind, x0 in x0s.items():
        generator = torch.Generator().manual_seed(args.seed)
        for t in args.timesteps:
            x_t = scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), torch.tensor([t]))
            rows[f"{kind} t={t}"], masses[f"{kind} t={t}"] = step_rows(model, x_t, t, test, args)
            print(kind, t, rows[f"{kind} t={t}"], flush=True)
    print_table("pointing game (the benchmark's planted score)", rows)
    print_table("mean |map| in the class's corner / in the centre", masses)
    result = {"command_args": vars(args), "pointing_game": rows, "corner_to_centre_mass": masses}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
