"""Data files as the trainer and the library read them: compressed files, and the errors for files they cannot read."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from diffusers_xai.modalities.hf_datasets import data_file_suffix, load_hf_dataset
from diffusers_xai.modalities.tabular import TabularPreprocessor, load_table


def test_data_file_suffix_reads_under_a_compression_suffix():
    assert [data_file_suffix(n) for n in ("a.csv.gz", "b.CSV", "c.jsonl.bz2", "d.gz", "e.parquet")] == [
        ".csv",
        ".csv",
        ".jsonl",
        "",
        ".parquet",
    ]


def test_a_compressed_packaged_table_reads_alike_in_the_trainer_and_the_library():
    """plotly ships its tables as `.csv.gz`: the trainer said "Couldn't find any data file" for a file that exists,
    and `load_table` refused it as unsupported."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "datasets" / "wind.csv.gz"
    expected = pd.read_csv(path)
    pd.testing.assert_frame_equal(load_table(path), expected)
    pd.testing.assert_frame_equal(load_hf_dataset(SimpleNamespace(dataset_name=str(path))).to_pandas(), expected)


def test_a_json_table_has_the_same_columns_from_the_library_as_from_the_trainer():
    """vega's cars.json: pyarrow (the trainer's reader) reads its ISO `Year` as a timestamp, pandas' read_json as
    text; the library now reads files through the same `datasets` builder."""
    from vega_datasets import local_data

    path = local_data.cars.filepath
    trainer = load_hf_dataset(SimpleNamespace(dataset_name=path)).to_pandas()
    pd.testing.assert_frame_equal(load_table(path), trainer)
    assert str(trainer["Year"].dtype).startswith("datetime64")


def test_a_column_that_turns_to_text_after_the_first_chunk_is_named(tmp_path):
    """`datasets` types a CSV column from its first 10,000 rows; text after them raised its DatasetGenerationError
    ("An error occurred while generating the dataset") from deep inside pyarrow."""
    path = tmp_path / "late.csv"
    pd.DataFrame({"a": np.arange(25_000), "b": [1.5] * 15_000 + ["x"] * 10_000}).to_csv(path, index=False)
    message = (
        f"{str(path)!r} could not be read: column 'b' holds numbers in 15000 rows and text in 10000 (e.g. 'x' at row "
        "15000). Make every column one type: mark its non-numbers as missing (pd.to_numeric(errors='coerce')), or, "
        "if it holds categories, write it as text to a Parquet file (df.astype({'b': str}).to_parquet(...)) and read "
        "that."
    )
    with pytest.raises(ValueError) as library:
        TabularPreprocessor.fit(path)
    with pytest.raises(ValueError) as trainer:
        load_hf_dataset(SimpleNamespace(dataset_name=str(path)))
    assert str(library.value) == str(trainer.value) == message


def test_an_existing_file_of_another_type_is_refused_by_name(tmp_path):
    """It was taken for a Hub id and refused as "Couldn't find any data file" (or a missing repository)."""
    path = tmp_path / "rows.npz"
    np.savez(path, x=np.zeros(3))
    expected = f"{str(path)!r} is a file of a type this cannot read; use a .csv/.tsv/.parquet/.pq/.json/.jsonl"
    for read in (lambda: load_table(path), lambda: load_hf_dataset(SimpleNamespace(dataset_name=str(path)))):
        with pytest.raises(ValueError, match="^" + expected.replace(".", r"\.")):
            read()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty: it has no header and no rows; give a table with a header row."),
        (
            "rows.jsonl",
            b'{"a": 1}\n{"a": \n',
            "is not valid JSON (JSON parse error: Invalid value. in row 1); write one object per line (JSON Lines: "
            "df.to_json(path, orient='records', lines=True)) or one array of objects.",
        ),
        (
            "cp1252.csv",
            "name,price\nCaf\u00e9,2\n".encode("cp1252"),
            "is not UTF-8 text (invalid continuation byte: byte b'\\xe9' at position 14); save it as UTF-8, e.g. "
            "pd.read_csv(path, encoding='latin-1').to_csv(new_path, index=False).",
        ),
        ("cut.parquet", b"PAR1\x00\x00", "could not be read as Parquet (ArrowInvalid: "),
    ],
    ids=["empty", "bad-json", "not-utf8", "cut-parquet"],
)
def test_a_file_that_cannot_be_read_is_named_with_the_fix(tmp_path, name, content, message):
    """pandas' and pyarrow's own words ("No columns to parse from file", "'utf-8' codec can't decode byte 0xe9",
    "Parquet file size is 6 bytes, ...") named neither the file nor the fix; the JSON case was told to make its
    columns one type."""
    path = tmp_path / name
    path.write_bytes(content)
    for read in (lambda: load_table(path), lambda: load_hf_dataset(SimpleNamespace(dataset_name=str(path)))):
        with pytest.raises(ValueError) as info:
            read()
        assert str(info.value).startswith(f"{str(path)!r} {message}"), str(info.value)


@pytest.mark.parametrize(
    "name, shape, first_columns",
    [
        ("anes96", (944, 10), ["popul", "TVnews", "selfLR"]),  # tabs, `'` quotes
        ("modechoice", (840, 9), ["individual", "mode", "choice"]),  # semicolons
        ("spector", (32, 5), ["OBS", "GPA", "TUCE"]),  # spaces, `'` quotes
        ("fair", (6366, 9), ["rate_marriage", "age", "yrs_married"]),  # commas
    ],
)
def test_a_csv_separated_by_another_character_is_read_in_its_columns(name, shape, first_columns):
    """statsmodels ships these as `.csv`; read with commas, anes96 was one column of 943 levels and modechoice one
    identifier column (no model feature at all)."""
    import statsmodels.datasets

    path = Path(statsmodels.datasets.__file__).parent / name / f"{name}.csv"
    for frame in (load_table(path), load_hf_dataset(SimpleNamespace(dataset_name=str(path))).to_pandas()):
        assert frame.shape == shape and list(frame.columns[:3]) == first_columns
        assert pd.api.types.is_numeric_dtype(frame[first_columns[1]])


def test_a_one_column_csv_whose_header_has_a_space_stays_one_column(tmp_path):
    path = tmp_path / "co2.csv"
    path.write_text("CO2 ppm\n315.2\n316.1\n")
    assert load_table(path).columns.tolist() == ["CO2 ppm"]


def test_a_semicolon_csv_with_decimal_commas_reads_numbers(tmp_path):
    """A European export: `;` between fields and `,` in numbers. Read with commas it was one column; with `;` alone
    its numbers were text, modelled as categories."""
    euro = tmp_path / "euro.csv"
    euro.write_text("name;height;weight\nanna;1,62;55,5\nben;1,80;80,0\ncarl;1,75;72,25\n")
    expected = pd.DataFrame(
        {"name": ["anna", "ben", "carl"], "height": [1.62, 1.80, 1.75], "weight": [55.5, 80.0, 72.25]}
    )
    pd.testing.assert_frame_equal(load_table(euro), expected)
    points = tmp_path / "points.csv"  # `;` with decimal points keeps them
    points.write_text("a;b\n1.5;2\n2.5;3\n")
    assert load_table(points)["a"].tolist() == [1.5, 2.5]


def test_comment_lines_above_the_header_are_skipped(tmp_path):
    """matplotlib's packaged Stocks.csv opens with `# Data source: https://finance.yahoo.com`. Read as the header,
    that line gave a one-column table whose dates became `__index_level_0__`, refused as "not dates" over a stray
    `Date`. A `#` inside a row stays a value."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "Stocks.csv"
    for frame in (load_table(path), load_hf_dataset(SimpleNamespace(dataset_name=str(path))).to_pandas()):
        assert frame.shape == (524, 11) and list(frame.columns[:3]) == ["Date", "IBM", "AAPL"]
        assert frame["Date"].iloc[0] == "1990-01-01" and frame["IBM"].dtype == np.float64
    notes = tmp_path / "notes.tsv"
    notes.write_text("# exported 2026-12-07\n#   by hand\nroom\tcode\nA\t#12\nB\t#7\n")
    pd.testing.assert_frame_equal(load_table(notes), pd.DataFrame({"room": ["A", "B"], "code": ["#12", "#7"]}))
