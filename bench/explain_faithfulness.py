"""Do the explanation methods pass their own checks? Faithfulness, randomisation and planted ground truth (issue 13).

For each modality (the bundled Space checkpoints: `spaces/digits-ddpm` images, `spaces/wine-tabddpm` tables,
`spaces/sines-timeseries` series) and each candidate method, on `--samples` generated samples (DDIM,
`--inference-steps`, seeded) at `--steps` explained steps (evenly inside the schedule: fractions 1/(K+1) .. K/(K+1)
of the run; the first step is pure noise and the last is x0 itself):

1. deletion and insertion AUC gains over random maps, units replaced by fresh noise at the step's noise level, on the
   method's own (default: the model's contribution to x0) target, with 95% percentile-bootstrap CIs over the
   samples x steps; passes when both intervals exclude 0 from above ([`faithfulness_check`]). Tables explain each
   column's contribution (the table card's question), checked per column and pooled ([`column_checks`], `TARGETS`);
2. cascading model randomisation (output layers inwards, then fully); passes when the Spearman of |maps| between the
   trained and the fully randomised model is < 0.5 ([`cascading_randomization`]);
3. planted ground truth: a small model of the same modality fitted here on data whose answer is known
   ([`diffusers_xai.explain.planted`]), explained at the same fractions of its schedule on `--planted-samples`
   held-out samples diffused to each step: tables, top-1 precision of the parent `a` of column `c`; series, the peak
   of the follower's attribution on the driver channel at the true lag (a white-noise driver by default, whose
   independent points make the lag the one cause at every noise level; `--planted-series-driver ar2` restores the
   earlier AR(2) driver, on which even the exact optimum's input-multiplied map misses the lag); images, the
   pointing game of "why this class" in the class's corner, on a class-conditional model whose null class learnt
   the digits without any mark (so the class is the mark's only source, [`planted_image_model`]). Passes at >= 0.8.

Prints one markdown table per modality and writes the numbers as JSON (`--out`); `--write-verdicts` also stores
them as the package's verdicts (`diffusers_xai/explain/verdicts.json`), which cards, the Space and the default
method lists read. Heavy: run it under the shared lock.

    python bench/explain_faithfulness.py --threads 2 --write-verdicts
    python bench/explain_faithfulness.py --samples 8 --steps 1 --planted-samples 16 --planted-fit-scale 0.2  # short
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "image": ROOT / "spaces" / "digits-ddpm",
    "tabular": ROOT / "spaces" / "wine-tabddpm",
    "timeseries": ROOT / "spaces" / "sines-timeseries",
}
CANDIDATES = {
    "image": ("integrated_gradients", "occlusion", "shap", "gradcam", "saliency", "attention"),
    "tabular": ("integrated_gradients", "occlusion", "shap", "saliency"),
    "timeseries": ("integrated_gradients", "occlusion", "shap", "saliency"),
}
# per-method `attribute()` keywords: those of the explanation card (`Explainer`)
ATTRIBUTE_KWARGS = {
    "integrated_gradients": {"n_steps": 32},
    "shap": {"nsamples": 64},
    "gradcam": {"relu_attributions": True},
}
PLANTED_FIT_STEPS = {"image": 400, "tabular": 1500, "timeseries": 1500}
RECOVERY_THRESHOLD = 0.8
# Two channels per GroupNorm group (16 and 32 over 8) in every block of the planted image UNet. With one per group (the
# earlier (8, 16)) the last up block's norm ignores a constant added to a channel, so its GradCAM channel weights are
# identically 0 (`vanishing_gradcam_layers`): plain GradCAM could not be judged there and scored 0.19-0.32, a fact of
# the test model rather than of the method (it scores 1.00 on the paired model: `bench/explain_variants.py`).
PLANTED_IMAGE_CHANNELS = (16, 32)
# The question each modality's verdicts are about, recorded in every verdict's settings (`target`). Tables ask what the
# table card shows (`column_attributions`): each generated column's model contribution to x̂0, one map per column
# (`column_target`), checked per column and pooled (`column_checks`); the planted check explains one column too
# (x̂0[c]). Their sum over all columns (the image question) is mostly the model's column-by-column shrinkage of x_t,
# whose input-multiplied maps follow |x_t| as a randomised model's do (`bench/explain_tabular_question.py --jacobian`).
TARGETS = {
    "image": "model contribution to x0, summed",
    "tabular": "model contribution to each column of x0",
    "timeseries": "model contribution to x0, summed",
}


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--modalities", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=None, help="override the candidate methods (every modality)")
    parser.add_argument("--samples", type=int, default=32, help="generated samples explained per modality")
    parser.add_argument("--steps", type=int, default=3, help="explained steps K per sample")
    parser.add_argument("--inference-steps", type=int, default=50, help="DDIM steps of the generation")
    parser.add_argument("--n-random", type=int, default=8, help="random maps per (sample, step)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the CIs")
    parser.add_argument("--max-stages", type=int, default=4, help="cascading randomisation stages (incl. full)")
    parser.add_argument("--planted-samples", type=int, default=64, help="held-out planted samples per step")
    parser.add_argument("--planted-fit-scale", type=float, default=1.0, help="scales the planted models' fit steps")
    parser.add_argument(
        "--planted-series-driver", default="white", choices=["white", "ar2"],
        help="the planted series' driver: white noise (well posed, the default) or AR(2) (the earlier design)",
    )  # fmt: skip
    parser.add_argument(
        "--planted-image-channels", nargs=2, type=int, default=list(PLANTED_IMAGE_CHANNELS),
        help="the planted image UNet's block widths over its 8 GroupNorm groups (8 16: the earlier model, whose last "
        "up block has one channel per group, so GradCAM's weights vanish there)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="explain_faithfulness.json", help="JSON with every number")
    parser.add_argument("--write-verdicts", action="store_true", help="store the results as the package's verdicts")
    parser.add_argument(
        "--include-conditioning", action="store_true",
        help="tables: the faithfulness and randomisation maps also attribute to the class embedding, as the table "
        "card does (column_attributions); the planted check is unchanged",
    )  # fmt: skip
    parser.add_argument(
        "--merge", nargs="+", default=None, help="print and write (--out) the merge of earlier JSON reports; no run"
    )
    args = parser.parse_args(argv)
    if args.samples * args.steps < 8:
        parser.error(f"--samples x --steps must be >= 8 for a 95% bootstrap CI, got {args.samples * args.steps}")
    return args


# ---- the models and their generations ----


def load_pipeline(modality: str):
    from diffusers_xai import DiffusionXAIPipeline
    from diffusers_xai.modalities.tabular import TabularXAIPipeline
    from diffusers_xai.modalities.timeseries import TimeSeriesXAIPipeline

    cls = {"image": DiffusionXAIPipeline, "tabular": TabularXAIPipeline, "timeseries": TimeSeriesXAIPipeline}
    pipe = cls[modality].from_pretrained(str(MODELS[modality]), use_safetensors=True).to(torch.float32)
    pipe.set_scheduler("ddim")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, modality: str, n: int, steps: int, seed: int) -> tuple:
    """`(trace, attribute kwargs)` of one seeded DDIM generation of `n` samples."""
    from diffusers_xai import TraceConfig

    generator = torch.Generator().manual_seed(seed)
    trace = TraceConfig(attention=False)
    if modality == "image":
        out = pipe(batch_size=n, generator=generator, num_inference_steps=steps, trace=trace, output_type="pt")
        return out.trace, {}
    if modality == "tabular":
        out = pipe(num_rows=n, generator=generator, num_inference_steps=steps, trace=trace, output_type="pt")
        return out.trace, ({"class_labels": out.class_labels} if out.class_labels is not None else {})
    out = pipe(num_series=n, generator=generator, num_inference_steps=steps, trace=trace, output_type="pt")
    return out.trace, {}


def inner_fractions(timesteps: list[int], k: int) -> list[int]:
    """`k` timesteps at fractions 1/(k+1) .. k/(k+1) of a run (never the pure-noise first or the last step)."""
    n = len(timesteps)
    return [int(timesteps[round((i + 1) * (n - 1) / (k + 1))]) for i in range(k)]


def explainer_init(method: str, modality: str) -> dict:
    """Constructor keywords of `method` as the card builds it (images: `IMAGE_INIT_DEFAULTS`, IG's noise baseline)."""
    from diffusers_xai.explain.explain import INIT_DEFAULTS

    return dict(INIT_DEFAULTS.get(modality, {}).get(method, {}))


# ---- planted ground truth ----


def planted_setup(modality: str, args) -> dict:
    """A model fitted on the modality's planted data, held-out x_0 and how to score recovery."""
    from diffusers_xai.explain import planted
    from diffusers_xai.testing import planted_image_model, planted_series_pipeline, planted_table_pipeline

    steps = max(1, round(PLANTED_FIT_STEPS[modality] * args.planted_fit_scale))
    n, seed = args.planted_samples, args.seed + 1
    if modality == "image":
        # the null class learns the digits without the mark: the class is the mark's only source at every step
        unet, scheduler, data = planted_image_model(
            16, tuple(args.planted_image_channels), num_steps=steps, seed=args.seed, null_images="unmarked"
        )
        test = planted.planted_images(n, 16, seed=seed)
        model = SimpleNamespace(unet=unet, scheduler=scheduler)

        def score(explainer, x_t, t):
            return planted.recover_class_region(explainer, x_t, [t], test.class_labels, test.regions, data.num_classes)

        return {"model": model, "x0": test.images, "score": score, "truth": "pointing game of 'why this class'"}
    if modality == "tabular":
        pipe, data = planted_table_pipeline(num_steps=steps, seed=args.seed)
        test = planted.planted_table(n, seed=seed)
        labels = pipe.preprocessor.encode_labels(test.frame["y"])
        names = pipe.preprocessor.feature_names()
        column, parents = names.index("c"), [names.index(p) for p in data.parents["c"]]

        def score(explainer, x_t, t):
            return planted.recover_parents(explainer, x_t, [t], column, parents, class_labels=labels)

        x0 = pipe.preprocessor.transform(test.frame)
        return {"model": pipe, "x0": x0, "score": score, "truth": "top-1 precision of parent a of c"}
    driver = getattr(args, "planted_series_driver", "white")
    pipe, data = planted_series_pipeline(num_steps=steps, seed=args.seed, driver=driver)
    test = planted.planted_series(n, seed=seed, driver=driver)
    position = test.windows.shape[1] // 2

    def score(explainer, x_t, t):
        return planted.recover_lag(explainer, x_t, [t], 1, position, test.true_position(position))

    x0 = pipe.preprocessor.transform(test.windows)
    truth = f"peak at the true lag ({data.delay}), {driver} driver"
    return {"model": pipe, "x0": x0, "score": score, "truth": truth}


def planted_recovery(setup: dict, method: str, fractions_k: int, args, modality: str) -> dict:
    from diffusers_xai.explain import build_explainer

    model = setup["model"]
    scheduler = type(model.scheduler).from_config(model.scheduler.config)
    scheduler.set_timesteps(args.inference_steps)
    timesteps = inner_fractions([int(t) for t in scheduler.timesteps], fractions_k)
    generator = torch.Generator().manual_seed(args.seed)
    hits = []
    explainer = build_explainer(model, method, modality)
    for t in timesteps:
        x0 = setup["x0"]
        x_t = model.scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), torch.tensor([t]))
        hits.append(setup["score"](explainer, x_t, t).float())
    hits = torch.cat(hits)
    value = float(hits.mean())
    per_step = [round(float(h.mean()), 4) for h in hits.chunk(len(timesteps))]
    return {
        "value": round(value, 4),
        "per_step": dict(zip(map(str, timesteps), per_step)),
        "n": int(hits.numel()),
        "truth": setup["truth"],
        "threshold": RECOVERY_THRESHOLD,
        "passed": value >= RECOVERY_THRESHOLD,
    }


# ---- tables: one map per generated column ----


def column_checks(explainer, trace, timesteps: list[int], args, cache: dict, **kwargs) -> dict:
    """
    `run_checks` of each numerical column's target (`column_target`: the model's contribution to that column of
    x̂0), pooled into one summary of the same shape: the deletion and insertion gains averaged over the columns per
    (sample, step), then bootstrapped over the samples x steps as `faithfulness_check` does (same units, seeds and
    threshold); the randomisation Spearman averaged over every column's maps per stage (< 0.5 at full). Each
    column keeps its own random-map curves (they depend on the target); `per_column` keeps each column's means.
    """
    from diffusers_xai.explain import column_target, run_checks

    pre = explainer.preprocessor
    if pre.categorical:
        raise ValueError("column_checks scores numerical columns; a categorical target needs `target_inputs=`.")
    checks = {}
    for column in [c["name"] for c in pre.numerical]:
        checks[column] = run_checks(
            explainer, trace, timesteps, max_stages=args.max_stages, seed=args.seed,
            random_curves_cache=cache.setdefault(column, {}), target=column_target(pre, column),
            faithfulness_kwargs={"n_random": args.n_random, "n_boot": args.n_boot}, **kwargs,
        )  # fmt: skip
    return pool_column_checks(checks, args.n_boot, args.seed)


def pool_column_checks(checks: dict, n_boot: int, seed: int) -> dict:
    """One `ExplanationChecks.summary()`-shaped dict from the columns' `ExplanationChecks` (see `column_checks`): the
    pooled gains and Spearmans go into the library's `FaithfulnessCheck` and `RandomizationCheck`, whose summaries
    (pass rules, signed numbers of an unsigned map, the model-independence warning) the verdicts print."""
    from diffusers_xai.explain.checks import FaithfulnessCheck, bootstrap_ci
    from diffusers_xai.explain.randomization import RandomizationCheck

    method = next(iter(checks.values())).method
    faith = [c.faithfulness for c in checks.values()]
    rand = [c.randomization for c in checks.values()]

    def pooled(per_column: list[torch.Tensor], offset: int) -> tuple:  # [K, B] gains, averaged over the columns
        gains = torch.stack(per_column).nanmean(dim=0)
        return gains, bootstrap_ci(gains, n_boot, 0.95, seed + offset, "finite (sample, step) gains")

    deletion, deletion_ci = pooled([f.deletion_gain for f in faith], 0)
    insertion, insertion_ci = pooled([f.insertion_gain for f in faith], 1)
    signed_cis = {}
    if not faith[0].signed:  # an unsigned map: the signed protocol's pooled gains, for transparency
        for offset, name in enumerate(("deletion", "insertion")):
            per_column = [torch.stack([getattr(r.signed_result, f"{name}_gain") for r in f.per_step]) for f in faith]
            signed_cis[f"signed_{name}_ci"] = pooled(per_column, offset)[1]
    faithfulness = FaithfulnessCheck(
        method=method, timesteps=faith[0].timesteps, deletion_gain=deletion, insertion_gain=insertion,
        deletion_ci=deletion_ci, insertion_ci=insertion_ci, baseline=faith[0].baseline, signed=faith[0].signed,
        **signed_cis,
    )  # fmt: skip
    per_map = torch.stack([r.spearman_per_map for r in rand]).transpose(0, 1).flatten(1)  # [stages, columns x K x B]
    randomization = RandomizationCheck(
        method=method, stages=list(rand[0].stages), spearman=[float(v) for v in per_map.nanmean(dim=1)],
        spearman_per_map=per_map, timesteps=faith[0].timesteps, threshold=rand[0].threshold,
        independence_threshold=rand[0].independence_threshold,
    )  # fmt: skip
    summary = {"method": method, "faithfulness": faithfulness.summary(), "randomization": randomization.summary()}
    summary["passed"] = faithfulness.passed and randomization.passed
    summary["per_column"] = {
        column: {
            "deletion_gain": round(float(c.faithfulness.deletion_gain.nanmean()), 4),
            "insertion_gain": round(float(c.faithfulness.insertion_gain.nanmean()), 4),
            "spearman_full": round(c.randomization.spearman_full, 4),
        }
        for column, c in checks.items()
    }
    return summary


# ---- one modality ----


def check_modality(modality: str, args) -> dict:
    from diffusers_xai.explain import build_explainer, run_checks

    pipe = load_pipeline(modality)
    trace, cond = generate(pipe, modality, args.samples, args.inference_steps, args.seed)
    recorded = [s.timestep for s in trace.steps if s.latents is not None]
    timesteps = inner_fractions(recorded, args.steps)
    print(
        f"\n[{modality}] {MODELS[modality].relative_to(ROOT)}: {args.samples} samples x timesteps {timesteps}",
        flush=True,
    )
    start = time.perf_counter()
    setup = planted_setup(modality, args)
    print(f"[{modality}] planted model fitted in {time.perf_counter() - start:.0f} s", flush=True)
    results, cache = {}, {}
    for method in args.methods or CANDIDATES[modality]:
        start = time.perf_counter()
        entry: dict = {}
        try:
            explainer = build_explainer(pipe, method, modality)
            kwargs = dict(ATTRIBUTE_KWARGS.get(method, {}), **cond)
            if modality == "tabular":
                if args.include_conditioning:
                    kwargs["include_conditioning"] = True
                entry = column_checks(explainer, trace, timesteps, args, cache, **kwargs)
            else:
                entry = run_checks(
                    explainer, trace, timesteps, max_stages=args.max_stages, seed=args.seed, random_curves_cache=cache,
                    faithfulness_kwargs={"n_random": args.n_random, "n_boot": args.n_boot}, **kwargs,
                ).summary()  # fmt: skip
            entry["settings"] = {**explainer_init(method, modality), **ATTRIBUTE_KWARGS.get(method, {})}
            entry["settings"]["target"] = TARGETS[modality]
            entry["planted"] = planted_recovery(setup, method, args.steps, args, modality)
            entry["passed"] = bool(entry["passed"] and entry["planted"]["passed"])
        except (ValueError, TypeError, NotImplementedError) as err:  # a method that cannot explain this modality
            entry = {"method": method, "passed": False, "error": f"{type(err).__name__}: {err}"}
        entry["seconds_total"] = round(time.perf_counter() - start, 1)
        results[method] = entry
        print(
            f"[{modality}] {method}: {'pass' if entry['passed'] else 'FAIL'} ({entry['seconds_total']} s)", flush=True
        )
    return {
        "model": str(MODELS[modality].relative_to(ROOT)),
        "samples": args.samples,
        "timesteps": timesteps,
        "inference_steps": args.inference_steps,
        "methods": results,
    }


# ---- output ----


def _ci(check: dict | None) -> str:
    from diffusers_xai.explain.verdicts import ci_text

    text = ci_text(check)
    return "–" if text is None else f"{'✓' if check.get('passed') else '✗'} {text}"


def markdown_table(modality: str, result: dict) -> str:
    """One row per method: deletion / insertion gains with CIs, randomisation Spearman, planted recovery, verdict."""
    from diffusers_xai.explain.verdicts import method_checks

    lines = [
        f"**{modality}** (`{result['model']}`, {result['samples']} samples × timesteps {result['timesteps']} of "
        f"{result['inference_steps']} DDIM steps)",
        "",
        "| method | deletion gain [95% CI] | insertion gain [95% CI] | randomisation Spearman (full) | planted "
        "recovery | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, entry in result["methods"].items():
        if "error" in entry:
            lines.append(f"| {method} | – | – | – | – | fails: {entry['error'][:80]} |")
            continue
        faith, rand, planted, mark = method_checks(entry)  # mark: an unsigned map's protocol
        rho = rand.get("spearman_full")
        rho_cell = "–" if rho is None else f"{'✓' if rand.get('passed') else '✗'} {rho:.3f}"
        rec_cell = f"{'✓' if planted.get('passed') else '✗'} {planted.get('value', float('nan')):.3f}"
        verdict = "**pass**" if entry["passed"] else "**fail**"
        lines.append(
            f"| {method} | {_ci(faith.get('deletion_gain'))}{mark} | {_ci(faith.get('insertion_gain'))}{mark} | "
            f"{rho_cell} | {rec_cell} | {verdict} |"
        )
    return "\n".join(lines)


def write_json(obj: dict, path: Path) -> None:
    from diffusers_xai.utils.io import atomic_write

    atomic_write(path, json.dumps(obj, indent=2) + "\n")


def merge_reports(paths: list[str]) -> dict:
    """One report from several runs (e.g. one per modality): each modality from the last run that has it, with that
    run's command and conditions kept next to its numbers."""
    merged: dict = {"command": "", "conditions": {}, "modalities": {}}
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        merged["conditions"] = report["conditions"]
        for modality, entry in report["modalities"].items():
            entry.setdefault("command", report["command"])
            entry.setdefault("conditions", report["conditions"])
            merged["modalities"][modality] = entry
    # only the runs whose numbers were kept: a modality overwritten by a later run drops its command
    merged["command"] = " && ".join(dict.fromkeys(e["command"] for e in merged["modalities"].values()))
    return merged


def main(args) -> dict:
    if args.merge:
        report = merge_reports(args.merge)
        for modality, result in report["modalities"].items():
            print("\n" + markdown_table(modality, result))
        write_json(report, Path(args.out))
        if args.write_verdicts:
            from diffusers_xai.explain.verdicts import VERDICTS_PATH

            write_json(report, VERDICTS_PATH)
        return report
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    report = {
        "command": "python bench/explain_faithfulness.py " + " ".join(sys.argv[1:]),
        "conditions": {
            "samples": args.samples,
            "explained_steps": args.steps,
            "inference_steps": args.inference_steps,
            "n_random": args.n_random,
            "n_boot": args.n_boot,
            "max_stages": args.max_stages,
            "planted_samples": args.planted_samples,
            "planted_fit_scale": args.planted_fit_scale,
            "threads": args.threads,
            "seed": args.seed,
            "include_conditioning": args.include_conditioning,
        },
        "modalities": {},
    }
    start = time.perf_counter()
    for modality in args.modalities:
        report["modalities"][modality] = check_modality(modality, args)
    report["seconds"] = round(time.perf_counter() - start, 1)
    for modality, result in report["modalities"].items():
        print("\n" + markdown_table(modality, result))
    print(f"\n{report['seconds']:.0f} s in all.")
    write_json(report, Path(args.out))
    if args.write_verdicts:
        from diffusers_xai.explain.verdicts import VERDICTS_PATH

        write_json(report, VERDICTS_PATH)
        print(f"verdicts written to {VERDICTS_PATH}")
    return report


if __name__ == "__main__":
    main(parse_args())
