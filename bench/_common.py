"""What the benchmarks' command lines share (imported as `_common`: a script's folder is first on `sys.path`)."""

from __future__ import annotations

import argparse


def bench_parser(doc: str | None, threads: int) -> argparse.ArgumentParser:
    """A benchmark's parser: `--help` prints the script's docstring `doc` as written, and `--threads` (the
    `torch.set_num_threads` of the run) defaults to `threads`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=threads, help="torch.set_num_threads")
    return parser
