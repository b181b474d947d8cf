"""Why ours' iris rows under-generate setosa and lose TSTR to TVAE, and three levers measured over several draws.

Ours is trained exactly as `bench/tabular_quality.py` trains it (its split, `fit_ours_from_args`, the privacy guard),
then sampled `--draws` times with DDPM-1000 (draw d from seed `seed + 1000 d`) and each draw scored with the bench's
`score`. Per draw it also reports the setosa count and the agreement between the generated `species` and what a
logistic regression fitted on the real training rows says for the generated numbers; before training, the species
counts of the 84 rows the trainer keeps after its unstratified 20% holdout. Levers (experiment only, patched in this
process, not options of the library):

- `--onehot_scale s`: the one-hot block's codes are ±s instead of ±1 (argmax decoding is unchanged by the scale; a
  larger s keeps the level readable at higher noise, so it is decided earlier in sampling);
- `--categorical_loss_weight w`: the MSE of the `species` block's features weighted w (the numbers' weight 1);
- `--no_ema`: the guard checks and keeps the raw weights instead of the EMA's.

`--tvae` scores SDV's TVAE the same way instead (fitted as the bench fits it; its draws follow each other from the
generator's state after fitting, as the bench samples it once, so draw 0 is the bench's row): how much of the gap is
one draw.

    python bench/tabular_iris_levers.py --seed 0 [--onehot_scale 2] [--categorical_loss_weight 3] [--no_ema]
        [--early_stop 0] [--tvae]

Prints one `RESULT` line: where the guard stopped, the mean over the draws of Trend, detection AUC, TSTR, DCR ratio,
agreement and setosa count, and TSTR per draw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import types
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import diffusers_xai.modalities.tabular.data as tabular_data  # noqa: E402
import diffusers_xai.training.trainer as trainer  # noqa: E402
from diffusers_xai.modalities.tabular import codes  # noqa: E402

CODEBOOK = codes.codebook
SPECIES = slice(4, 7)  # iris' features: 4 quantile-normal numbers, then the one-hot block of `species`


def patch(onehot_scale: float, loss_weight: float) -> None:
    """The levers, patched into this process: one-hot codes ±`onehot_scale`, the species block's MSE weighted."""
    scale = onehot_scale
    tabular_data.codebook = lambda k, enc, c=None: CODEBOOK(k, enc, c) * (scale if enc == "onehot" else 1.0)
    if loss_weight != 1.0:

        def weighted_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            weight = torch.ones(prediction.shape[-1])
            weight[SPECIES] = loss_weight
            return ((prediction - target) ** 2 * weight).mean()

        trainer.F = types.SimpleNamespace(mse_loss=weighted_mse)


def trainer_species(train_df, seed: int) -> dict:
    """The species counts of the rows the trainer trains on (its `validation_split` 0.2, `trainer._prepare_data`)."""
    import datasets

    rows = datasets.Dataset.from_pandas(train_df, preserve_index=False)
    split = rows.train_test_split(test_size=max(1, round(len(rows) * 0.2)), seed=seed or 0, shuffle=True)
    return split["train"].to_pandas()["species"].value_counts().to_dict()


def tvae_sampler(train_df, metadata: dict, seed: int, updates: int):
    """SDV's TVAE fitted as `tabular_quality.fit_sdv` fits it; returns `sample(n)` (TVAE has no public random state,
    which the bench's sampler therefore never sets: consecutive calls continue the fitted generator's stream)."""
    from sdv.metadata import Metadata
    from sdv.single_table import TVAESynthesizer
    from tabular_quality import sdv_updates_settings

    torch.manual_seed(seed)
    np.random.seed(seed)
    settings = sdv_updates_settings("TVAE", len(train_df), updates)
    synth = TVAESynthesizer(Metadata.load_from_dict(metadata, single_table_name="table"), enable_gpu=False, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth.fit({"table": train_df})

    def sample(n: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = synth.sample(num_rows=n)
        return (rows["table"] if isinstance(rows, dict) else rows)[list(train_df.columns)]

    return sample


def draw_rows(args: argparse.Namespace, bench: argparse.Namespace, train_df, metadata: dict, workdir: str, out: dict):
    """`sample(d)`: the rows of draw d, from ours (trained here, as the bench trains it) or `--tvae`."""
    from tabular_quality import fit_ours_from_args, sample_ours

    if args.tvae:
        tvae = tvae_sampler(train_df, metadata, args.seed, bench.steps)
        return lambda d: tvae(len(train_df))
    pipe, _ = fit_ours_from_args("iris", train_df, workdir, bench, **({"use_ema": False} if args.no_ema else {}))
    out.update(stopped=pipe.train_result.global_step, kept=pipe.train_result.restored_step)
    return lambda d: sample_ours(pipe, "ddpm1000", len(train_df), args.seed + 1000 * d)


def main(args: argparse.Namespace) -> dict:
    patch(args.onehot_scale, args.categorical_loss_weight)
    from sklearn.linear_model import LogisticRegression
    from tabular_quality import TABLES, metadata_for, parse_args, score, split

    torch.set_num_threads(1)
    bench = parse_args(["--tables", "iris", "--samplers", "ddpm1000", "--peers", "--threads", "1"])
    bench.seed, bench.early_stop = args.seed, args.early_stop
    train_df, test_df = split("iris", args.seed)
    metadata, targets = metadata_for("iris", train_df), TABLES["iris"][1]
    numbers = [c for c in train_df.columns if c != "species"]
    real = LogisticRegression(max_iter=2000).fit(train_df[numbers], train_df["species"])
    out = {"seed": args.seed, "trainer_rows": trainer_species(train_df, args.seed), "draws": []}
    out.update(stopped=None, kept=None)
    with tempfile.TemporaryDirectory() as workdir:
        sample = draw_rows(args, bench, train_df, metadata, workdir, out)
        for d in range(args.draws):
            rows = sample(d)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = score(train_df, test_df, rows, targets, metadata, args.seed, "iris")
            draw = {k: s[k] for k in ("column_pair_trends", "detection_auc", "tstr", "dcr_ratio")}
            draw["agree"] = float(np.mean(real.predict(rows[numbers]) == rows["species"].to_numpy()))
            draw["setosa"] = int((rows["species"] == "setosa").sum())
            out["draws"].append(draw)
    out["mean"] = {k: float(np.mean([d[k] for d in out["draws"]])) for k in out["draws"][0]}
    head = {k: out[k] for k in ("seed", "trainer_rows", "stopped", "kept")}
    mean = {k: round(v, 3) for k, v in out["mean"].items()}
    print("RESULT", json.dumps(head), mean, "TSTR per draw", [round(d["tstr"], 3) for d in out["draws"]], flush=True)
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=6)
    parser.add_argument("--onehot_scale", type=float, default=1.0, help="One-hot codes ±this (library: 1).")
    parser.add_argument("--categorical_loss_weight", type=float, default=1.0, help="The species block's MSE weight.")
    parser.add_argument("--no_ema", action="store_true", help="Guard and keep the raw weights, not the EMA's.")
    parser.add_argument(
        "--early_stop", type=float, default=0.9, help="The bench's `--early_stop` (0: no guard, all updates)."
    )
    parser.add_argument("--tvae", action="store_true", help="Score SDV's TVAE's draws instead of ours'.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse())
