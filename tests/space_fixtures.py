"""The Space's app (`spaces/app.py`) for its tests: imported as a module, and served on a free local port.

```py
from tests.space_fixtures import load_space_app, serve_space_app

app = load_space_app("space_app_x", tmp_path / "outputs")
with serve_space_app(app) as (demo, url):
    client = gradio_client.Client(url, verbose=False)
```
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from tests.repo_scripts import load_script


def free_port() -> int:
    """A local TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_space_app(name: str, output_dir: Path | None = None) -> ModuleType:
    """`spaces/app.py` imported as module `name`; with `output_dir`, the tabs write their files there."""
    module = load_script("spaces/app.py", name)
    if output_dir is not None:
        module.common.OUTPUT_DIR = output_dir
    return module


@contextmanager
def serve_space_app(app: ModuleType) -> Iterator[tuple[object, str]]:
    """`(demo, url)`: the app's demo, queued one call at a time and launched on a free local port; closed on exit."""
    demo = app.build_demo()
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo, url
    finally:
        demo.close()
