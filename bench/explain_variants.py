"""Is the input factor why IG, occlusion and SHAP fail on tables and series? Global vs local variants, three checks.

`bench/explain_faithfulness.py` finds that on wine the input-multiplied methods keep a Spearman of 0.56-0.59 after
full randomisation, and that on the planted series they miss the lag. Both would follow if their maps were ordered
by |x_t - baseline| rather than by what the model does: IG is (x - x') times the path-averaged gradient (Sundararajan
et al. 2017), occlusion's change is about the gradient times (x - x'), and GradientSHAP is IG averaged over
baselines. This script runs the same three checks (same models, samples, steps, seeds and settings as
`bench/explain_faithfulness.py`) on variants that remove or keep that factor:

- `integrated_gradients` (global, the default) and `integrated_gradients_local` (captum's `multiply_by_inputs=False`:
  the path-averaged gradient alone);
- `gradient_shap_local` (GradientSHAP with `multiply_by_inputs=False`, noise-level baselines);
- `gradient_shap` (global: expected gradients over fresh-noise baselines at the step's noise level, the distribution
  the deletion check replaces units with);
- `input_x_gradient` (the gradient times x_t: the factor without the path);
- `occlusion_point` (series only: occlusion of one channel at one time point, explicitly; since issue 13's
  re-run this is also the series default, which was (C, L/8) windows over every channel).

`--modalities image` runs instead variants of the three image methods that fail one check on the digits model:
`smoothgrad` and `smoothgrad_sq` (Smilkov et al. 2017, captum's `NoiseTunnel(Saliency)`, 16 copies, noise std the
step's own sqrt(1 - alpha_bar_t); saliency fails insertion), `gradcam_output_block` / `gradcam_output_blocks` (GradCAM
of the last / last two up blocks, the layers at the output's resolution as Selvaraju et al. take the last conv layer;
the all-block mean misses the planted corner), `hirescam_output_block` / `hirescam_all_blocks` (HiResCAM, Draelos &
Carin 2020: the gradient per position instead of GradCAM's spatial average) and `integrated_gradients_noise` (IG
from one fresh-noise draw at the step's level instead of x' = 0, whose map peaks on the digit; averaged over draws
this becomes expected gradients, i.e. the `shap` method, so only the single-draw path integral is run here).
The planted image model has two channels per GroupNorm group; `--planted-channels 8 16` fits the earlier one, with one
channel per group in its last up block, where GradCAM's channel weights vanish (`vanishing_gradcam_layers`:
`gradcam_output_block` is refused there). `--planted-only` skips the checks on the trained model, which do not depend
on the planted one.

Each row also reports the mean Spearman of the trained model's |map| with |x_t| (how much of the map's order the input
alone gives). `--lag-analysis` asks instead whether the planted series question is well posed and the planted model
fitted: the planted series are Gaussian, so the Bayes-optimal denoiser is linear and its Jacobian (follower at tau
w.r.t. the driver's points) is compared with the fitted model's, with how often |J| and |J * x_t| (the exact
contribution of each input to a linear map) peak at the true lag. `--driver` picks the planted driver: `white` (the
benchmark's, independent points: the optimum's |J * x_t| peaks at the lag in every window) or `ar2` (the earlier
design, whose correlated neighbours spread the optimum's dependence so that even its |J * x_t| misses the lag at
high noise). `--driver` also sets the planted series of the variant runs.

    OMP_NUM_THREADS=1 python bench/explain_variants.py --modalities tabular timeseries
    OMP_NUM_THREADS=1 python bench/explain_variants.py --lag-analysis [--driver ar2] [--lag-fit-steps 6000]
    OMP_NUM_THREADS=1 python bench/explain_variants.py --modalities image [--variants gradcam_output_block]
    OMP_NUM_THREADS=1 python bench/explain_variants.py --modalities image --planted-only [--planted-channels 8 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explain_faithfulness as ef  # noqa: E402  (the benchmark's models, generation, planted set-up)

from diffusers_xai.explain import DenoiserAttribution, run_checks  # noqa: E402

VARIANTS = {  # name: (method, constructor kwargs, attribute kwargs)
    "integrated_gradients": ("integrated_gradients", {}, {"n_steps": 32}),
    "integrated_gradients_local": ("integrated_gradients", {"multiply_by_inputs": False}, {"n_steps": 32}),
    "gradient_shap_local": ("gradient_shap", {"multiply_by_inputs": False}, {}),
    "gradient_shap": ("gradient_shap", {}, {"n_samples": 32}),  # expected gradients over fresh-noise baselines
    "input_x_gradient": ("input_x_gradient", {}, {}),
    "occlusion_point": ("occlusion", {}, {"sliding_window_shapes": (1, 1), "strides": (1, 1)}),
}


# images (`--modalities image`): variants of the three image methods that fail one check (issue 13)
IMAGE_VARIANTS = {  # name: (explainer class name, constructor kwargs, attribute kwargs)
    "smoothgrad": ("DenoiserAttribution", {"method": "smoothgrad"}, {}),  # NoiseTunnel(Saliency), sigma_t, n=16
    "smoothgrad_sq": ("DenoiserAttribution", {"method": "smoothgrad"}, {"nt_type": "smoothgrad_sq"}),
    "gradcam_all_blocks": ("DenoiserGradCAM", {}, {"relu_attributions": True}),
    "gradcam_output_block": ("DenoiserGradCAM", {"layer": "output_block"}, {"relu_attributions": True}),
    "gradcam_output_blocks": ("DenoiserGradCAM", {"layer": "output_blocks"}, {"relu_attributions": True}),
    "hirescam_output_block": (
        "DenoiserGradCAM",
        {"layer": "output_block", "weighting": "hirescam"},
        {"relu_attributions": True},
    ),  # fmt: skip
    "hirescam_all_blocks": ("DenoiserGradCAM", {"weighting": "hirescam"}, {"relu_attributions": True}),
    "integrated_gradients_noise": (
        "DenoiserAttribution",
        {"method": "integrated_gradients", "baselines": "noise"},
        {"n_steps": 32},
    ),  # fmt: skip
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--modalities", nargs="+", default=["tabular", "timeseries"], choices=["tabular", "timeseries", "image"]
    )
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants (default: all)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="explained steps per sample")
    parser.add_argument("--planted-samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--planted-channels",
        nargs=2,
        type=int,
        default=list(ef.PLANTED_IMAGE_CHANNELS),
        help="the planted image model's block widths over its 8 groups (the benchmark's 16 32: two channels per "
        "group; 8 16, the earlier model: one per group, where GradCAM of the last up block is refused)",
    )
    parser.add_argument(
        "--planted-only", action="store_true", help="only the planted check (skip the digits/wine/series checks)"
    )
    parser.add_argument("--lag-analysis", action="store_true", help="only the planted series' Jacobian analysis")
    parser.add_argument("--lag-fit-steps", type=int, default=ef.PLANTED_FIT_STEPS["timeseries"])
    parser.add_argument(
        "--driver", default="white", choices=["white", "ar2"], help="the planted series' driver (`planted_series`)"
    )
    return parser.parse_args(argv)


class _WithKwargs:
    """An explainer whose `attribute` always gets `kwargs` (the planted scorers call `attribute` themselves)."""

    def __init__(self, explainer, kwargs: dict):
        self.explainer, self.kwargs = explainer, kwargs

    def attribute(self, *args, target=None, **kwargs):
        return self.explainer.attribute(*args, target=target, **{**self.kwargs, **kwargs})


def planted_value(setup: dict, explainer, steps: int, seed: int) -> list[float]:
    model = setup["model"]
    scheduler = type(model.scheduler).from_config(model.scheduler.config)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for t in ef.inner_fractions([int(t) for t in scheduler.timesteps], steps):
        x0 = setup["x0"]
        x_t = model.scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), torch.tensor([t]))
        values.append(round(float(setup["score"](explainer, x_t, t).float().mean()), 3))
    return values


def input_factor_spearman(explainer, trace, timesteps: list[int], kwargs: dict) -> float:
    """Mean Spearman, per (step, sample), of the trained model's |map| against |x_t| (summed over channels): how much
    of the map's order the input alone gives (the same for a randomised model)."""
    from torchmetrics.functional import spearman_corrcoef

    maps = explainer.attribute(trace, timesteps=timesteps, **kwargs).maps.float().abs()
    steps = explainer._steps(trace, timesteps, explainer.target)
    x = torch.stack([s.sample.float().abs() for s in steps])  # [K, B, *S]
    x = x if x.ndim == 3 else x.sum(dim=2)  # one value per unit: features, or time points / pixels over channels
    units = x[0, 0].numel()
    a, b = maps.reshape(-1, units), x.reshape(-1, units)
    return round(float(spearman_corrcoef(a.T, b.T).nanmean()), 3)


def _variants(modality: str) -> dict:
    """name -> (factory(model) -> explainer, attribute kwargs) of the variants run on `modality`."""
    from diffusers_xai import explain

    if modality == "image":
        return {
            name: (lambda model, c=cls, i=init: getattr(explain, c)(model, **i), kwargs)
            for name, (cls, init, kwargs) in IMAGE_VARIANTS.items()
        }
    out = {}
    for name, (method, init, kwargs) in VARIANTS.items():
        if name == "occlusion_point" and modality != "timeseries":
            continue  # rows are already occluded one feature at a time
        out[name] = (lambda model, m=method, i=init: DenoiserAttribution(model, m, **i), kwargs)
    return out


def run_modality(modality: str, args) -> dict:
    plant_args = SimpleNamespace(
        planted_fit_scale=1.0,
        planted_samples=args.planted_samples,
        seed=args.seed,
        planted_series_driver=args.driver,
        planted_image_channels=args.planted_channels,
    )
    setup = ef.planted_setup(modality, plant_args)
    checked = None if args.planted_only else _checked_samples(modality, args)
    rows = {}
    for name, (factory, kwargs) in _variants(modality).items():
        if args.variants and name not in args.variants:
            continue
        start = time.perf_counter()
        rows[name] = {
            **(_checks(factory, kwargs, checked, args.seed) if checked else {}),
            **_planted(modality, setup, factory, kwargs, args),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(modality, name, rows[name], flush=True)
    return rows


def _checked_samples(modality: str, args) -> tuple:
    """The benchmark's trained model, its generated trace, conditioning and explained timesteps."""
    pipe = ef.load_pipeline(modality)
    trace, cond = ef.generate(pipe, modality, args.samples, 50, args.seed)
    timesteps = ef.inner_fractions([s.timestep for s in trace.steps if s.latents is not None], args.steps)
    return pipe, trace, cond, timesteps


def _checks(factory, kwargs: dict, checked: tuple, seed: int) -> dict:
    """Faithfulness, randomisation and the input factor of one variant on the benchmark's trained model."""
    pipe, trace, cond, timesteps = checked
    summary = run_checks(
        factory(pipe), trace, timesteps, max_stages=4, seed=seed,
        faithfulness_kwargs={"n_random": 8, "n_boot": 2000}, **kwargs, **cond,
    ).summary()  # fmt: skip
    deletion, insertion = (summary["faithfulness"][k] for k in ("deletion_gain", "insertion_gain"))
    return {
        "protocol": summary["faithfulness"]["protocol"],
        "deletion": [deletion["mean"], deletion["ci_low"], deletion["ci_high"]],
        "insertion": [insertion["mean"], insertion["ci_low"], insertion["ci_high"]],
        "spearman_full": summary["randomization"]["spearman_full"],
        "spearman_vs_|x_t|": input_factor_spearman(factory(pipe), trace, timesteps, {**kwargs, **cond}),
    }


def _planted(modality: str, setup: dict, factory, kwargs: dict, args) -> dict:
    """The planted check of one variant, or why the planted model refuses it."""
    # images: the planted map as bench/explain_faithfulness.py scores it, with the constructor's settings only
    # (e.g. GradCAM without the ReLU the faithfulness checks use); rows and windows: with the variant's kwargs
    planted_kwargs = {} if modality == "image" else kwargs
    try:
        planted_explainer = _WithKwargs(factory(setup["model"]), planted_kwargs)
    except ValueError as err:  # refused on the planted model, e.g. GradCAM of a block whose weights vanish there
        planted, refused = [], str(err)
    else:
        planted, refused = planted_value(setup, planted_explainer, args.steps, args.seed), None
    return {
        "planted_per_step": planted,
        "planted": round(sum(planted) / len(planted), 3) if planted else None,
        "planted_refused": refused,
    }


# ---- is the planted series question well posed, and its model fitted? (`--lag-analysis`) ----


def optimal_jacobian(cov: torch.Tensor, alpha_bar_t: float) -> torch.Tensor:
    r"""
    $\partial \hat{x}_0^* / \partial x_t$ of the Bayes-optimal denoiser of zero-mean Gaussian data with covariance
    `cov` `[D, D]`: $\hat{x}_0^* = E[x_0 \mid x_t] = \sqrt{\bar\alpha}\,\Sigma(\bar\alpha\Sigma +
    (1-\bar\alpha) I)^{-1} x_t$, a linear map (the planted series are Gaussian: a white-noise or AR(2) driver and
    its noisy shifted copy).
    """
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    return alpha_bar_t**0.5 * torch.linalg.solve(alpha_bar_t * cov + (1 - alpha_bar_t) * eye, cov, left=False)


def optimal_lag_inputs(pre, driver: str, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(cov, test)`: the covariance `[2L, 2L]` of 20,000 planted windows (channel-major, in `pre`'s standardised
    units; seed `seed + 7`) and `samples` held-out windows `[N, 2, L]` (seed `seed + 1`, as the benchmark's)."""
    from diffusers_xai.explain import planted

    big = planted.planted_series(20000, seed=seed + 7, driver=driver).windows
    cov = torch.cov(pre.transform(big).double().flatten(1).T)
    return cov, pre.transform(planted.planted_series(samples, seed=seed + 1, driver=driver).windows)


def lag_analysis(args) -> dict:
    """
    Per explained step: the optimal and the trained denoiser's dependence of the follower's x̂0 at tau on the driver's
    points, and how often |J| and |J * x_t| (IG/SHAP of a linear map, zero-mean baseline) peak at the true lag.
    """
    from diffusers_xai.explain import ExplanationTarget
    from diffusers_xai.testing import planted_series_pipeline

    pipe, data = planted_series_pipeline(num_steps=args.lag_fit_steps, seed=args.seed, driver=args.driver)
    pre, length, delay = pipe.preprocessor, data.windows.shape[1], data.delay
    cov, test = optimal_lag_inputs(pre, args.driver, args.planted_samples, args.seed)
    tau, cause = length // 2, length // 2 - delay
    mask = torch.zeros(2, length)
    mask[1, tau] = 1.0
    saliency = DenoiserAttribution(pipe, "saliency", target=ExplanationTarget(mask=mask))
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(args.seed)
    out = {"driver": args.driver, "fit_steps": args.lag_fit_steps, "tau": tau, "true_cause": cause, "steps": {}}
    window = list(range(cause - 2, cause + 3))
    for t in ef.inner_fractions([int(t) for t in scheduler.timesteps], args.steps):
        a = float(pipe.scheduler.alphas_cumprod[t])
        x_t = pipe.scheduler.add_noise(test, torch.randn(test.shape, generator=generator), torch.tensor([t]))
        j_opt = optimal_jacobian(cov, a)[length + tau, :length].float()  # follower at tau <- driver points
        grads = saliency.attribute(x_t, timesteps=[t], abs=False).attributions[0][:, 0]  # [B, L] driver row
        j_fit = grads.mean(0)

        def hits(scores: torch.Tensor) -> float:
            return round(float((scores.abs().argmax(dim=-1) == cause).float().mean()), 3)

        out["steps"][str(t)] = {
            "alpha_bar": round(a, 4),
            "optimal_J_at_lags_-2..+2": [round(float(j_opt[i] / j_opt.abs().max()), 3) for i in window],
            "trained_J_at_lags_-2..+2": [round(float(j_fit[i] / j_fit.abs().max()), 3) for i in window],
            "cosine_trained_vs_optimal": round(float(torch.cosine_similarity(j_fit, j_opt, dim=0)), 3),
            "peak_hits_optimal_|J|": hits(j_opt[None]),
            "peak_hits_trained_|J|": hits(grads),
            "peak_hits_optimal_|J*x_t|": hits(j_opt[None] * x_t[:, 0]),
            "peak_hits_trained_|J*x_t|": hits(grads * x_t[:, 0]),
        }
        print(t, out["steps"][str(t)], flush=True)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.lag_analysis:
        result = {"lag_analysis": lag_analysis(args)}
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return result
    result = {m: run_modality(m, args) for m in args.modalities}
    print(
        "\n| modality | variant | deletion gain [95% CI] | insertion gain [95% CI] | randomisation Spearman |"
        " Spearman vs |x_t| | planted |"
    )
    print("|---|---|---|---|---|---|---|")
    for modality, rows in result.items():
        for name, r in rows.items():
            per_step = " / ".join(map(str, r["planted_per_step"]))
            planted = "refused" if r["planted"] is None else f"{r['planted']:.2f} ({per_step})"
            if "deletion" not in r:  # --planted-only
                print(f"| {modality} | {name} | | | | | {planted} |")
                continue
            d, i = r["deletion"], r["insertion"]
            print(
                f"| {modality} | {name} | {d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}] | {i[0]:+.2f} [{i[1]:+.2f}, "
                f"{i[2]:+.2f}] | {r['spearman_full']:.2f} | {r['spearman_vs_|x_t|']:.2f} | {planted} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
