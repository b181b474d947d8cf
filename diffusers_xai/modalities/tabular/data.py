"""The tables a training run reads: the built-in ones (sklearn's wine and breast cancer) and any DataFrame, CSV,
Parquet or JSON file or HF `datasets.Dataset`, as a `pandas.DataFrame`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...utils.moved_modules import moved_attribute_getter
from ..hf_datasets import load_data_file

__all__ = ["TABULAR_DATASETS", "load_breast_cancer_frame", "load_table", "load_tabular_dataset", "load_wine_frame"]

__getattr__ = moved_attribute_getter(__name__)  # `TabularPreprocessor` & co., for pipelines saved before it moved


def load_wine_frame() -> pd.DataFrame:
    """sklearn's wine table (178 rows): 13 chemical measurements and the integer `cultivar` (0, 1, 2).

    `magnesium` and `proline` are whole numbers in the source and are returned as `int64` columns."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frame = frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    return frame.astype({"magnesium": "int64", "proline": "int64", "cultivar": "int64"})


def load_breast_cancer_frame() -> pd.DataFrame:
    """sklearn's breast-cancer table (569 rows): 30 float features and a string `diagnosis` ("malignant"/"benign")
    derived from the target, to exercise mixed types."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = np.asarray(data.target_names)[data.target.to_numpy()].astype(object)
    return frame


TABULAR_DATASETS = {"wine": load_wine_frame, "breast_cancer": load_breast_cancer_frame}


def load_table(source: Any) -> pd.DataFrame:
    """
    A table as a `pandas.DataFrame` from a DataFrame, a file path read as the trainer reads it ([`load_data_file`]:
    CSV/TSV, Parquet, JSON(L), also compressed, e.g. `.csv.gz`), a built-in name (`"wine"`, `"breast_cancer"`) or an HF
    `datasets.Dataset`.
    """
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, os.PathLike)):
        if str(source) in TABULAR_DATASETS:
            return TABULAR_DATASETS[str(source)]()
        path = Path(source)
        if not path.exists():
            raise ValueError(
                f"Table {str(source)!r} is neither a file nor a built-in dataset ({sorted(TABULAR_DATASETS)})."
            )
        return load_data_file(path)["train"].to_pandas()
    if hasattr(source, "to_pandas") and hasattr(source, "column_names"):
        return source.to_pandas()
    raise TypeError(
        f"Cannot read a table from {type(source).__name__}; pass a DataFrame, a CSV/Parquet path or a "
        "datasets.Dataset."
    )


def load_tabular_dataset(source: Any):
    """The table of [`load_table`] as an HF `datasets.Dataset` (what the trainer iterates over)."""
    import datasets

    return datasets.Dataset.from_pandas(load_table(source), preserve_index=False)
