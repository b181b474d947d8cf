"""The image files a dataset refers to, checked before training: a file PIL cannot read is named up front."""

from __future__ import annotations

import os

__all__ = ["check_image_files"]


def check_image_files(dataset, column: str, batch_size: int = 1000) -> None:
    """
    Open the header of every image file `column` of `dataset` refers to (PIL reads no pixels until asked), so that a
    file it cannot read is named before training starts: `datasets` decodes an image only when its batch is drawn,
    and a damaged `b.png` in a folder stopped a run at that batch, after the run folder and its logs were written.
    Rows holding the image's bytes (a Parquet or Hub dataset) are not checked: they were written as images; when the
    first batch holds no local file, no more batches are read.
    """
    import datasets
    from tqdm.auto import tqdm

    refs = dataset.select_columns([column]).cast_column(column, datasets.Image(decode=False))
    row = 0
    with tqdm(total=len(refs), desc="Checking image files", disable=len(refs) < 10 * batch_size) as bar:
        for batch in refs.iter(batch_size=batch_size):
            checked = sum(_check_file(ref, row + i, column) for i, ref in enumerate(batch[column]))
            if not checked and row == 0:
                return  # embedded images, not files
            row += len(batch[column])
            bar.update(len(batch[column]))


def _check_file(ref: dict | None, row: int, column: str) -> bool:
    """Open one row's image file (`{"path", "bytes"}`); `False` when the row holds bytes or no local file."""
    from PIL import Image, UnidentifiedImageError

    path = (ref or {}).get("path")
    if not path or (ref or {}).get("bytes") is not None or not os.path.isfile(path):
        return False
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(
            f"Image file {path!r} (row {row} of column {column!r}) cannot be read as an image "
            f"({type(err).__name__}): it is damaged or not an image; remove or re-save it."
        ) from err
