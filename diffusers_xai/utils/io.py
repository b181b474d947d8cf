"""
One way to write a file: atomically.

Every file this package writes (reports, cards, figures, traces, manifests, shards) goes to a temp file in the
destination's folder and is renamed over the destination with `os.replace`, so a reader or a crash never sees half a
file. (The same-folder temp file keeps the rename on one filesystem, where POSIX makes it atomic.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", fsync: bool = False) -> Iterator[Path]:
    """
    Yield a temp path next to `path` (parents created) to write to; on leaving the block without an error it is
    renamed to `path`, otherwise removed. Temp names are `.<name>.<random><suffix>`: pass `suffix=".png"` when the
    writer infers the format from the extension. `fsync=True` flushes the file to disk before the rename.

    ```py
    >>> with atomic_path("out/plot.png", suffix=".png") as tmp:
    ...     figure.savefig(tmp)
    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str | os.PathLike, data: str | bytes, fsync: bool = False) -> Path:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically ([`atomic_path`]); returns the path."""
    with atomic_path(path, fsync=fsync) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)
