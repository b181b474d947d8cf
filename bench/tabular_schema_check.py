"""Does a trained table model write the real table's schema? For each `RUN=DATA` pair (a pipeline folder the recipe
trained and the data file it trained on), sample as many rows as the table has (seed 0) and list what differs:
column order, dtypes, missing-value rates beyond 4 standard errors, numbers outside the real range (not totals or
products, which are written from their parts and may leave it), more decimals than the real column holds, levels
the real column lacks (not identifiers, which are fresh by design), dates outside the real range. Prints `OK` or the
differences, one line per run. Sampling only (seconds per run).

    python train/train_ddpm.py --config train/configs/wine.yaml --condition_column null \\
        --dataset_name <file> --output_dir runs/<name>
    python bench/tabular_schema_check.py runs/<name>=<file> [...]
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import torch
from _common import bench_parser

from diffusers_xai.modalities.tabular import load_table
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
from diffusers_xai.modalities.tabular.schema import learn_decimals

# a missing-value rate differs when it is this many binomial standard errors off the real one
NAN_RATE_SE = 4


def column_differences(name: str, real: pd.Series, rows: pd.Series, kind: str) -> list[str]:
    """What the generated column `rows` writes differently from the real column `real` (of preprocessor `kind`)."""
    out = [] if real.dtype == rows.dtype else [f"{name}: dtype {real.dtype} -> {rows.dtype}"]
    p, q = real.isna().mean(), rows.isna().mean()
    if abs(p - q) > NAN_RATE_SE * np.sqrt(max(p * (1 - p), 1 / len(real)) / len(real)):
        out.append(f"{name}: missing rate {p:.3f} -> {q:.3f}")
    if kind == "id":
        return out
    numeric = pd.api.types.is_numeric_dtype(real) and not pd.api.types.is_bool_dtype(real)
    dated = pd.api.types.is_datetime64_any_dtype(real)
    if (numeric and kind not in ("sum", "product")) or dated:
        if rows.min() < real.min() or rows.max() > real.max():
            out.append(f"{name}: range [{real.min()}, {real.max()}] -> [{rows.min()}, {rows.max()}]")
    if numeric:  # the preprocessor's own reading of decimals (`None`: a measured float, more than 14)
        real_decimals, row_decimals = (learn_decimals(c.to_numpy(np.float64, na_value=np.nan)) for c in (real, rows))
        if real_decimals is not None and (row_decimals is None or row_decimals > real_decimals):
            out.append(f"{name}: decimals {real_decimals} -> {row_decimals}")
    if not numeric and not dated and kind != "numerical":  # levels (a date string is numerical to the model)
        unseen = set(rows.dropna()) - set(real.dropna())
        if unseen:
            out.append(f"{name}: {len(unseen)} levels the real column lacks, e.g. {sorted(map(str, unseen))[:2]}")
    return out


def main(argv=None) -> None:
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("runs", nargs="+", help="RUN=DATA pairs: a trained pipeline folder and its data file.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    for pair in args.runs:
        run, data = pair.split("=", 1)
        real = load_table(data)
        pipe = TabularXAIPipeline.from_pretrained(run)
        pipe.set_progress_bar_config(disable=True)
        rows = pipe(num_rows=len(real), generator=torch.Generator().manual_seed(0)).rows
        kinds = {c["name"]: c["kind"] for c in pipe.preprocessor.columns}
        found = [] if list(rows.columns) == list(real.columns) else [f"columns {list(rows.columns)}"]
        for name in real.columns:
            if name in rows.columns:
                found += column_differences(str(name), real[name], rows[name], kinds.get(str(name), "numerical"))
        print(f"{os.path.basename(os.path.normpath(run))}: {'OK' if not found else '; '.join(found)}")


if __name__ == "__main__":
    main()
