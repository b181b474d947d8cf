"""Which packaged tables have totals, products, winners or fractions: columns the preprocessor writes as the sum of
others (`derived.mark_sums`), as the product of others (`derived.mark_products`) or as the name of the largest of
others (`derived.mark_argmax`), and numbers it writes as whole q-ths (`schema.learn_denominator`).

Every table that ships inside an installed package and is read here: sklearn's wine, breast_cancer, iris and
diabetes, palmerpenguins, and every data file of statsmodels' datasets, vega_datasets' local files and plotly's
packaged tables, each read as the trainer reads a file (`load_table`: compressed CSVs, other separators, JSON) and
fitted as the recipe fits it. Prints one line per table that gets such a column, then how many
tables were fitted and which were refused (with the first line of why). No model is trained (seconds).

    python bench/tabular_structure.py
"""

from __future__ import annotations

import glob
import logging
import os

import pandas as pd
import torch
from _common import bench_parser

from diffusers_xai.modalities.tabular import TabularPreprocessor, load_table


def packaged_tables() -> dict[str, pd.DataFrame]:
    import palmerpenguins
    import plotly
    import sklearn.datasets
    import statsmodels.datasets
    import vega_datasets

    tables = {
        name: getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
        for name in ("wine", "breast_cancer", "iris")
    }
    tables["diabetes"] = sklearn.datasets.load_diabetes(as_frame=True, scaled=False).frame
    tables["penguins"] = palmerpenguins.load_penguins()
    files = [
        *glob.glob(os.path.join(os.path.dirname(statsmodels.datasets.__file__), "*", "*.csv")),
        *glob.glob(os.path.join(os.path.dirname(vega_datasets.__file__), "_data", "*.csv")),
        *glob.glob(os.path.join(os.path.dirname(vega_datasets.__file__), "_data", "*.json")),
        *glob.glob(os.path.join(os.path.dirname(plotly.__file__), "package_data", "datasets", "*.csv.gz")),
    ]
    for path in sorted(files):
        try:
            tables[os.path.basename(path)] = load_table(path)
        except ValueError as err:  # not a table (e.g. a GeoJSON-like nesting): said, not counted
            print(f"not read: {os.path.basename(path)}: {str(err).splitlines()[0]}")
    return tables


def main(argv=None) -> None:
    args = bench_parser(__doc__, threads=1).parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    refused = {}
    tables = packaged_tables()
    for name, frame in sorted(tables.items()):
        try:
            pre = TabularPreprocessor.fit(frame)
        except ValueError as err:
            refused[name] = str(err).splitlines()[0]
            continue
        found = [f"{c['name']} = {' + '.join(c['parts'])}" for c in pre.columns if c["kind"] == "sum"]
        found += [f"{c['name']} = {' x '.join(c['factors'])}" for c in pre.columns if c["kind"] == "product"]
        found += [f"{c['name']} = the largest of {', '.join(c['over'])}" for c in pre.columns if c["kind"] == "argmax"]
        found += [f"{c['name']} in {c['denominator']}ths" for c in pre.numerical if c.get("denominator")]
        if found:
            print(f"{name} ({len(frame)} rows): " + "; ".join(found))
    print(f"{len(tables) - len(refused)} tables fitted; refused: {refused}")


if __name__ == "__main__":
    main()
