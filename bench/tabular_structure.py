"""Which packaged tables have totals, products, winners, fractions, orders, decided gaps, nested levels or point
masses: columns the preprocessor writes as the sum of others (`derived.mark_sums`), as the product of others
(`derived.mark_products`) or as the name of the largest of others (`derived.mark_argmax`), numbers it writes as
whole q-ths (`schema.learn_denominator`), orders between columns it keeps (`orders.mark_orders`, the ones others
imply left out), columns missing where another column says (`gaps.mark_gap_rules`) and columns of mostly once-seen
levels nested in a coarser column's levels (`nesting.mark_nesting`), and numbers with a point mass at a bound
(`atoms.bound_atoms`).

Every table that ships inside an installed package and is read here: sklearn's wine, breast_cancer, iris and
diabetes, palmerpenguins, and every data file of statsmodels' datasets, vega_datasets' local files and plotly's
packaged tables, matplotlib's sample CSVs, gradio's titanic.csv, and the single-table demos of sdmetrics and deepecho,
each read as the trainer reads a file (`load_table`: compressed CSVs, other separators, comment lines, JSON) and
fitted as the recipe fits it. Prints one line per table that gets such a column, then how many
tables were fitted and which were refused (with the first line of why). No model is trained (seconds).

    python bench/tabular_structure.py
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os

import pandas as pd
import torch
from _common import bench_parser

from diffusers_xai.modalities.tabular import TabularPreprocessor, load_table
from diffusers_xai.modalities.tabular.orders import reduced_orders


def _package_dir(name: str) -> str:
    """An installed package's folder, without importing it (gradio takes seconds to import); "" if not installed."""
    spec = importlib.util.find_spec(name)
    return spec.submodule_search_locations[0] if spec is not None and spec.submodule_search_locations else ""


def packaged_tables() -> dict[str, pd.DataFrame]:
    import matplotlib
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
        *glob.glob(os.path.join(matplotlib.get_data_path(), "sample_data", "*.csv")),
        *glob.glob(os.path.join(_package_dir("gradio"), "media_assets", "data", "titanic.csv")),
        *glob.glob(os.path.join(_package_dir("sdmetrics"), "demos", "single_table", "*_real.csv")),
        *glob.glob(os.path.join(_package_dir("deepecho"), "data", "demo.csv")),
    ]
    for path in sorted(files):
        try:
            tables[os.path.basename(path)] = load_table(path)
        except ValueError as err:  # not a table (e.g. a GeoJSON-like nesting): said, not counted
            print(f"not read: {os.path.basename(path)}: {str(err).splitlines()[0]}")
    return tables


def _gap_rule(spec: dict) -> str | None:
    rule = spec.get("missing_when")
    if rule is not None:
        return f"{rule['column']} is {' or '.join(map(str, rule['levels']))}"
    return f"{spec['missing_with']} is" if spec.get("missing_with") else None


def _point_masses(spec: dict) -> str:
    """A column's point masses at its bounds (`atoms.bound_atoms`): `x at 0 on 2.3%`, and the mass deciding it."""
    said = []
    for share, key, suffix in zip(spec["atoms"], ("min", "max"), (":min", ":max")):
        if share:
            tie = spec.get("bound_with", {}).get(suffix)
            said.append(f"at {spec[key]:g} on {share:.1%}" + (f" with {tie[0]}" if tie else ""))
    return f"{spec['name']} {' and '.join(said)}"


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
        found += [_point_masses(c) for c in pre.bounded]
        found += [f"{low} <= {high}" for low, high in reduced_orders(pre.columns)]
        found += [f"{c['name']} missing where {_gap_rule(c)}" for c in pre.columns if _gap_rule(c)]
        found += [
            f"{c['name']} within {', '.join(r['column'] for r in c['within'])}" for c in pre.columns if c.get("within")
        ]
        if found:
            print(f"{name} ({len(frame)} rows): " + "; ".join(found))
    print(f"{len(tables) - len(refused)} tables fitted; refused: {refused}")


if __name__ == "__main__":
    main()
