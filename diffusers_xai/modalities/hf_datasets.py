"""Training data as Hugging Face `datasets`: a Hub id, a `save_to_disk` folder, a CSV / Parquet / JSON file or an
image folder, map-style or streamed; shared by every modality's `load_dataset`."""

from __future__ import annotations

import logging
import os
import re

__all__ = [
    "COMPRESSIONS",
    "DATA_FILE_BUILDERS",
    "NoRowsError",
    "STREAM_SHARDS",
    "data_file_suffix",
    "load_data_file",
    "load_hf_dataset",
    "to_stream",
]

logger = logging.getLogger(__name__)

# `dataset_name` values ending like this are read with the matching `datasets` builder (`load_dataset("csv", ...)`).
DATA_FILE_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
}
# ... also when compressed (plotly's packaged tables are `.csv.gz`): `datasets` and pandas both decompress these
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")


def data_file_suffix(name: str | os.PathLike) -> str:
    """The data format's suffix of a file name, under a compression suffix: `"wind.csv.gz"` → `".csv"`."""
    base, suffix = os.path.splitext(os.fspath(name).lower())
    return os.path.splitext(base)[1] if suffix in COMPRESSIONS else suffix


def _unsupported_file(name: str) -> ValueError:
    return ValueError(
        f"{name!r} is a file of a type this cannot read; use a "
        f"{'/'.join(DATA_FILE_BUILDERS)} file (also {'/'.join(COMPRESSIONS)}-compressed), a `save_to_disk` folder "
        "or a Hub dataset id."
    )


class NoRowsError(ValueError):
    """A data file that holds a header at most."""


def load_data_file(name: str | os.PathLike, cache_dir: str | None = None, streaming: bool = False):
    """
    A `.csv`/`.tsv`/`.parquet`/`.json(l)` file (also compressed) as the `"train"` split of a `datasets.DatasetDict`,
    read by the matching `datasets` builder; the trainer and [`load_table`] both read files through here, so a
    table's columns have the same types wherever it is read (pyarrow reads ISO dates in JSON as timestamps).
    """
    import datasets

    name = os.fspath(name)
    if data_file_suffix(name) not in DATA_FILE_BUILDERS:
        raise _unsupported_file(name)
    builder = DATA_FILE_BUILDERS[data_file_suffix(name)]
    try:
        kwargs = _csv_dialect(name) if builder == "csv" else {}
        if builder == "parquet":
            _check_parquet(name)
        return datasets.load_dataset(
            builder, data_files={"train": name}, cache_dir=cache_dir, streaming=streaming, **kwargs
        )
    except datasets.exceptions.DatasetGenerationError as err:  # pyarrow typed a column from its first rows
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ValueError) and (mapped := _read_error(name, cause)) is not None:
            raise mapped from err
        if "JSON parse error" in str(cause):
            raise ValueError(
                f"{name!r} is not valid JSON ({cause}); write one object per line (JSON Lines: "
                "df.to_json(path, orient='records', lines=True)) or one array of objects."
            ) from err
        column, detail = _mixed_column(name, kwargs) if builder == "csv" else (None, "")
        raise ValueError(
            f"{name!r} could not be read: {detail or f'{type(cause).__name__}: {cause}'}. Make every column one "
            "type: mark its non-numbers as missing (pd.to_numeric(errors='coerce')), or, if it holds categories, "
            f"write it as text to a Parquet file (df.astype({{{column or 'column'!r}: str}}).to_parquet(...)) and "
            "read that."
        ) from err
    except ValueError as err:  # UnicodeDecodeError too
        mapped = _read_error(name, err)
        if mapped is None:
            raise
        raise mapped from err


def _read_error(name: str, err: ValueError) -> ValueError | None:
    """
    One line for a file `datasets` cannot read at all; its own words are pandas' or pyarrow's ("No columns to parse
    from file", "Instruction \"train\" corresponds to no data!", "Parquet file size is 1 bytes, ..."), which name
    neither the file nor the fix.
    """
    import pandas as pd
    import pyarrow as pa

    if isinstance(err, UnicodeDecodeError):
        return ValueError(
            f"{name!r} is not UTF-8 text ({err.reason}: byte {err.object[err.start : err.start + 1]!r} at position "
            f"{err.start}); save it as UTF-8, e.g. pd.read_csv(path, encoding='latin-1').to_csv(new_path, "
            "index=False)."
        )
    if isinstance(err, pd.errors.EmptyDataError):
        return ValueError(f"{name!r} is empty: it has no header and no rows; give a table with a header row.")
    if "corresponds to no data" in str(err):
        return NoRowsError(f"{name!r} has no rows (a header at most); give a table with at least one data row.")
    if isinstance(err, pa.ArrowException) and data_file_suffix(name) in (".parquet", ".pq"):
        return ValueError(
            f"{name!r} could not be read as Parquet ({type(err).__name__}: {_first_line(err)}); is it complete? "
            "Write it again with df.to_parquet(path)."
        )
    return None


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _check_parquet(name: str) -> None:
    """Read a Parquet file's footer: `datasets` logs a broken one as an error line of its own before raising."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(name, "rb", compression="infer") as f:
        pq.read_schema(f)


# separators other than a comma that a `.csv` may hold (statsmodels' packaged anes96.csv: tabs, modechoice.csv: `;`,
# spector.csv: spaces, with `'` quotes)
OTHER_SEPARATORS = "\t;| "


def _csv_dialect(name: str) -> dict:
    """
    The `delimiter` (and `quotechar`) of a CSV or TSV file for `datasets`' csv builder. A `.csv` whose header holds
    no comma but another separator is read with the separator `csv.Sniffer` finds: read with commas it was one
    column (anes96's 944 rows became a 943-level categorical). A header with a comma keeps the comma.
    """
    import csv

    import fsspec

    with fsspec.open(name, "rt", compression="infer", encoding="utf-8", errors="replace") as f:
        head = f.read(1 << 16)
    skip = _comment_lines(head)
    comments = {"skiprows": skip} if skip else {}
    if data_file_suffix(name) == ".tsv":
        return {"delimiter": "\t", **comments}
    head = "".join(head.splitlines(keepends=True)[skip:])
    header = head.splitlines()[0] if head else ""
    if "," in header or not any(c in header for c in OTHER_SEPARATORS):
        return comments
    try:
        dialect = csv.Sniffer().sniff(head[: head.rfind("\n") + 1] or head, delimiters=OTHER_SEPARATORS)
    except csv.Error:  # one column after all
        return comments
    lines = head.splitlines()[:2]
    widths = {len(row) for row in csv.reader(lines, dialect)}
    if len(lines) < 2 or widths != {max(widths)} or max(widths) < 2:  # "CO2 ppm" over numbers is one column
        return comments
    dialect_kwargs = {"delimiter": dialect.delimiter, "quotechar": dialect.quotechar, **comments}
    if dialect.delimiter == ";" and _decimal_commas(head, dialect):  # a European export: 1,5 is one and a half
        dialect_kwargs["decimal"] = ","
    logger.info(f"{name!r} has no comma in its header: read with {dialect_kwargs}.")
    return dialect_kwargs


def _comment_lines(head: str) -> int:
    """
    How many lines at the top of a CSV are comments (`# Data source: https://finance.yahoo.com` above matplotlib's
    packaged Stocks.csv): read as the header, that line made a one-column table whose rows' other fields became an
    index. Only leading lines are skipped; pandas' `comment="#"` would also cut a value holding `#` mid-row.
    """
    lines = head.splitlines()
    skip = 0
    while skip < len(lines) - 1 and lines[skip].lstrip().startswith("#"):
        skip += 1
    return skip


_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")
_DECIMAL_POINT = re.compile(r"^-?\d+\.\d+$")


def _decimal_commas(head: str, dialect) -> bool:
    """Whether the first rows of a `;`-separated file write numbers with a decimal comma (`1,5`) and none with a
    decimal point."""
    import csv

    fields = [f.strip() for row in list(csv.reader(head.splitlines()[1:20], dialect)) for f in row]
    return any(_DECIMAL_COMMA.match(f) for f in fields) and not any(_DECIMAL_POINT.match(f) for f in fields)


def _mixed_column(name: str, dialect: dict) -> tuple[str | None, str]:
    """The first column of a CSV holding both numbers and text, described for the error of [`load_data_file`]."""
    import pandas as pd

    frame = pd.read_csv(name, sep=dialect.get("delimiter", ","), skiprows=dialect.get("skiprows"), dtype=str)
    for column in frame.columns:
        values = frame[column].dropna()
        numeric = pd.to_numeric(values, errors="coerce").notna()
        if numeric.any() and not numeric.all():
            row = values.index[~numeric.to_numpy()][0]
            return column, (
                f"column {column!r} holds numbers in {int(numeric.sum())} rows and text in {int((~numeric).sum())} "
                f"(e.g. {values[row]!r} at row {row})"
            )
    return None, ""


def load_hf_dataset(config, split: str | None = None, streaming: bool = False):
    """
    Read `config.dataset_name` / `config.train_data_dir` as an HF `datasets.Dataset` (shared by all modalities).

    `dataset_name` may be a directory written by `save_to_disk`, a `.csv`/`.tsv`/`.parquet`/`.json(l)` file (optionally
    compressed: `.csv.gz`), or a Hub
    dataset id; `train_data_dir` is an `imagefolder`. `split` defaults to `config.split` (or `"train"`).
    With `streaming=True` the result is a `datasets.IterableDataset`: files, Hub ids and image folders are read with
    `load_dataset(..., streaming=True)`, a `save_to_disk` folder (memory-mapped) through [`to_stream`].
    """
    import datasets

    split = split or getattr(config, "split", None) or "train"
    name = getattr(config, "dataset_name", None)
    try:
        data = _load(config, name, getattr(config, "cache_dir", None), streaming)
    except ValueError as err:  # datasets' wording for a source with no rows, or a file's (`NoRowsError`)
        if not isinstance(err, NoRowsError) and "corresponds to no data" not in str(err):
            raise
        raise ValueError(
            f"The dataset {name or config.train_data_dir!r} (split {split!r}) is empty; there is nothing to train on."
        ) from err
    except IndexError as err:  # `load_from_disk` of a dataset saved with zero rows
        raise ValueError(f"The dataset {name!r} could not be read; is it empty or incomplete?") from err
    if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in data:
            raise ValueError(f"Split {split!r} not found in {name or config.train_data_dir!r}; it has {list(data)}.")
        data = data[split]
    if streaming and isinstance(data, datasets.Dataset):
        data = to_stream(data)
    return data


# contiguous shards of an in-memory/memory-mapped dataset: `IterableDataset.shuffle` permutes the shard order (and
# then mixes rows in its buffer), so more shards make a better shuffle; reading order is unchanged when unshuffled
STREAM_SHARDS = 64


def to_stream(dataset):
    """A map-style `datasets.Dataset` as an `IterableDataset` of up to [`STREAM_SHARDS`] contiguous shards."""
    return dataset.to_iterable_dataset(num_shards=max(1, min(len(dataset), STREAM_SHARDS)))


def _load(config, name: str | None, cache_dir: str | None, streaming: bool = False):
    import datasets

    if getattr(config, "train_data_dir", None):
        data = datasets.load_dataset(
            "imagefolder", data_dir=config.train_data_dir, cache_dir=cache_dir, streaming=streaming
        )
    elif name is None:
        raise ValueError("Set `dataset_name` (Hub id, `save_to_disk` folder or CSV/Parquet file) or `train_data_dir`.")
    elif os.path.isdir(name) and any(
        os.path.isfile(os.path.join(name, f)) for f in ("dataset_info.json", "state.json", "dataset_dict.json")
    ):
        data = datasets.load_from_disk(name)
    elif data_file_suffix(name) in DATA_FILE_BUILDERS:
        if not os.path.isfile(name):
            raise ValueError(f"`dataset_name` {name!r} looks like a data file but does not exist.")
        data = load_data_file(name, cache_dir, streaming)
    elif os.path.isfile(name):  # `load_dataset` would look for a Hub repository of that name
        raise _unsupported_file(name)
    else:
        data = datasets.load_dataset(
            name, getattr(config, "dataset_config_name", None), cache_dir=cache_dir, streaming=streaming
        )
    return data
