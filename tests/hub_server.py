"""A local, file-backed stand-in for the Hugging Face Hub, for tests.

The real Hub is unreachable from CI, and `huggingface_hub` 2.x talks HTTP through its own `httpx` client, which
`responses`/`respx` cannot intercept. So this is a real HTTP server on 127.0.0.1 (threaded, random free port) that
speaks the subset of the Hub API that `huggingface_hub`, `diffusers` and `datasets` use to push and pull repos:

- `GET  /api/whoami-v2`, `POST /api/repos/create`, `POST /api/repos/delete`, `POST /api/validate-yaml`
- `POST /api/{models,datasets}/{repo_id}/preupload/{revision}` (`"lfs"` for binary/large files, `"regular"`
  otherwise), the Git LFS batch API (`POST /[datasets/]{repo_id}.git/info/lfs/objects/batch`, basic transfer: a PUT
  to this server, then verify), `POST .../commit/{revision}` (NDJSON: base64 files and `lfsFile` pointers). Xet is
  not implemented: clients must run with `HF_HUB_DISABLE_XET=1` (the fixture sets it).
- `GET  /api/{models,datasets}/{repo_id}[/revision/{revision}]` (repo info with `siblings`, `sha`, `cardData`),
  `GET .../tree/{revision}[/{path}]`, `POST .../paths-info/{revision}`, `GET .../refs`
- `HEAD|GET /[datasets/]{repo_id}/resolve/{revision}/{path}` with the headers `huggingface_hub` checks
  (`X-Repo-Commit`, `ETag`, `Content-Length`) and byte ranges.

Errors carry the Hub's `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) so clients raise
their usual exceptions. Failures can be injected ([`LocalHubServer.inject`]) to test 5xx and timeouts.

Storage is git-like on disk under `root`: content-addressed blobs (git blob SHA-1) and one JSON snapshot per commit.

Example:

```py
>>> with LocalHubServer(tmp_path) as hub:
...     hub.endpoint  # 'http://127.0.0.1:54321'; point HF_ENDPOINT at it (see tests/hub_fixtures.py)
```
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = ["DEFAULT_TOKEN", "DEFAULT_USER", "LocalHubServer", "git_blob_sha1", "validate_card_metadata"]

DEFAULT_USER = "xai-tester"
# A fake token: the server accepts exactly this one for writes (and private reads).
DEFAULT_TOKEN = "hf_localHubTestToken0123456789abcdefXYZ"
REPO_TYPES = ("model", "dataset", "space")
LFS_SUFFIXES = (".safetensors", ".parquet", ".arrow", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".npz", ".h5", ".onnx")
_YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub returns as `oid`/`ETag` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _upload_mode(path: str, sample: bytes, size: int) -> str:
    """As the Hub: LFS for binary content, large files and the usual binary suffixes; inline (regular) otherwise."""
    is_binary = b"\0" in sample
    return "lfs" if is_binary or size > 10_000_000 or path.endswith(LFS_SUFFIXES) else "regular"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# ---- card metadata validation (what `POST /api/validate-yaml` checks) ----
def _check_str_list(value, key: str, errors: list[str]) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f'"{key}" must be a string or an array of strings')


def _check_model_index(model_index, errors: list[str]) -> None:
    if not isinstance(model_index, list):
        errors.append('"model-index" must be an array')
        return
    for i, model in enumerate(model_index):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f'"model-index[{i}].name" is required and must be a string')
            continue
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f'"model-index[{i}].results" must be an array')
            continue
        for j, result in enumerate(results):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance(result, dict):
                errors.append(f'"{where}" must be an object')
                continue
            task = result.get("task")
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f'"{where}.task.type" is required and must be a string')
            dataset = result.get("dataset")
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("name", "type")):
                errors.append(f'"{where}.dataset" needs string "name" and "type"')
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'"{where}.metrics" must be a non-empty array')
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str) or "value" not in metric:
                    errors.append(f'"{where}.metrics[{k}]" needs a string "type" and a "value"')


def validate_card_metadata(content: str, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """
    Validate the YAML front matter of a README the way the Hub does (structurally): returns `(errors, warnings)`.

    Checks that the block parses to a mapping, the string/list types of the common keys and the `model-index`
    structure (`name`, `results[].task.type`, `results[].dataset.{name,type}`, `results[].metrics[].{type,value}`).
    """
    match = _YAML_BLOCK.match(content)
    if match is None:
        return [], ["Empty metadata: the README has no YAML front matter"]
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError as err:
        return [f"Invalid YAML: {err}"], []
    if data is None:
        return [], ["Empty metadata"]
    if not isinstance(data, dict):
        return ["The YAML metadata must be a mapping"], []
    errors: list[str] = []
    for key in ("license", "library_name", "pipeline_tag", "model_name"):
        if key in data and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    for key in ("tags", "datasets", "language", "metrics", "base_model"):
        if key in data:
            _check_str_list(data[key], key, errors)
    if "model-index" in data:
        if repo_type != "model":
            errors.append('"model-index" is only allowed in model cards')
        _check_model_index(data["model-index"], errors)
    return errors, []


# ---- storage ----
class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **body):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.body = status, message, code, headers or {}, body


@dataclass
class _Rule:
    method: str
    pattern: re.Pattern
    status: int | None
    delay: float
    times: int


class _Store:
    """Repos on disk: `{root}/{type}s/{ns}/{name}/{repo.json, commits/<sha>.json, blobs/<oid>}`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.RLock()

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def load_repo(self, repo_type: str, repo_id: str) -> dict | None:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_repo(self, repo_type: str, repo_id: str, repo: dict) -> None:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        tmp.replace(path)

    def create(self, repo_type: str, repo_id: str, private: bool) -> dict:
        rdir = self.repo_dir(repo_type, repo_id)
        (rdir / "blobs").mkdir(parents=True, exist_ok=True)
        (rdir / "commits").mkdir(exist_ok=True)
        repo = {"private": private, "createdAt": _now(), "refs": {}}
        self.save_repo(repo_type, repo_id, repo)
        gitattributes = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
        entry = self.regular_entry(repo_type, repo_id, gitattributes)
        repo["refs"]["main"] = self.write_commit(repo_type, repo_id, None, "initial commit", {".gitattributes": entry})
        self.save_repo(repo_type, repo_id, repo)
        return repo

    def _write_blob(self, repo_type: str, repo_id: str, key: str, data: bytes) -> None:
        path = self.repo_dir(repo_type, repo_id) / "blobs" / key
        if not path.exists():
            tmp = path.with_name(f"{key}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)

    def regular_entry(self, repo_type: str, repo_id: str, data: bytes) -> dict:
        """Store a regular (inline) file and return its tree entry."""
        oid = git_blob_sha1(data)
        self._write_blob(repo_type, repo_id, oid, data)
        return {"oid": oid, "size": len(data), "blob": oid}

    def put_lfs_object(self, repo_type: str, repo_id: str, sha256: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise _HubError(400, f"LFS upload content does not match its oid sha256:{sha256}")
        self._write_blob(repo_type, repo_id, sha256, data)

    def has_lfs_object(self, repo_type: str, repo_id: str, sha256: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / "blobs" / sha256).is_file()

    def lfs_entry(self, repo_type: str, repo_id: str, sha256: str, size: int) -> dict:
        """Tree entry of an LFS file already uploaded with `put_lfs_object` (git stores the pointer file)."""
        if not self.has_lfs_object(repo_type, repo_id, sha256):
            raise _HubError(400, f"LFS object sha256:{sha256} was never uploaded")
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        lfs = {"oid": sha256, "size": size, "pointerSize": len(pointer)}
        return {"oid": git_blob_sha1(pointer), "size": size, "blob": sha256, "lfs": lfs}

    def read_blob(self, repo_type: str, repo_id: str, key: str) -> bytes:
        return (self.repo_dir(repo_type, repo_id) / "blobs" / key).read_bytes()

    def commit(self, repo_type: str, repo_id: str, sha: str) -> dict:
        return json.loads((self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json").read_text())

    def write_commit(
        self, repo_type: str, repo_id: str, parent: str | None, message: str, added: dict[str, dict], deleted=()
    ) -> str:
        files = dict(self.commit(repo_type, repo_id, parent)["files"]) if parent else {}
        for path in deleted:
            prefix = path.rstrip("/") + "/"
            for name in [n for n in files if n == path or n.startswith(prefix)]:
                del files[name]
        files.update(added)
        record = {"parent": parent, "message": message, "date": _now(), "files": dict(sorted(files.items()))}
        sha = hashlib.sha1(json.dumps({**record, "nonce": time.perf_counter_ns()}).encode()).hexdigest()
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        path.write_text(json.dumps({**record, "sha": sha}, indent=1))
        return sha


# ---- server ----
class LocalHubServer:
    """
    A threaded HTTP server on 127.0.0.1 that stores Hub repos under `root`.

    Args:
        root (`str` or `os.PathLike`): where repos are stored (created if missing).
        token (`str`, *optional*, defaults to [`DEFAULT_TOKEN`]): the only bearer token accepted for writes and for
            reading private repos.
        user (`str`, *optional*, defaults to [`DEFAULT_USER`]): the account the token belongs to (the namespace of
            `create_repo("name")`).

    Use as a context manager (or `start()`/`close()`); `endpoint` is the URL to put in `HF_ENDPOINT`. `requests`
    lists every `(method, path, status)` served (never headers, so no token), for asserting what was called.
    """

    def __init__(self, root, *, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER):
        self.store = _Store(Path(root))
        self.store.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.user = user
        self.requests: list[tuple[str, str, int]] = []
        self.server_errors: list[str] = []
        self._rules: list[_Rule] = []
        self._rules_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LocalHubServer is not running; call start() or use it as a context manager.")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHubServer:
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)  # fast shutdown()
        self._thread = threading.Thread(target=serve, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # wakes up injected delays
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> LocalHubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # failure injection
    def inject(
        self, method: str, path_regex: str, *, status: int | None = None, delay: float = 0.0, times: int = 1
    ) -> None:
        """
        Make the next `times` requests whose method is `method` (or `"*"`) and whose path matches `path_regex`
        (`re.search`) wait `delay` seconds and then, if `status` is set, fail with that status (e.g. 503) instead of
        being served.
        """
        if status is None and delay <= 0:
            raise ValueError("inject() needs a `status` to return and/or a positive `delay`.")
        with self._rules_lock:
            self._rules.append(_Rule(method.upper(), re.compile(path_regex), status, delay, times))

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        with self._rules_lock:
            for rule in self._rules:
                if rule.times > 0 and rule.method in ("*", method) and rule.pattern.search(path):
                    rule.times -= 1
                    return rule
        return None

    # inspection helpers for tests
    def head(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """Commit sha that `revision` points to."""
        repo = self.store.load_repo(repo_type, repo_id)
        if repo is None:
            raise KeyError(f"No {repo_type} repo {repo_id!r} on the local hub.")
        return repo["refs"].get(revision, revision)

    def list_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        return sorted(self.store.commit(repo_type, repo_id, self.head(repo_id, repo_type, revision))["files"])

    def read(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        entry = self.store.commit(repo_type, repo_id, self.head(repo_id, repo_type, revision))["files"][path]
        return self.store.read_blob(repo_type, repo_id, entry["blob"])

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        return bool(self.store.load_repo(repo_type, repo_id)["private"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHubServer  # bound by LocalHubServer.start()

    def log_message(self, format, *args) -> None:  # noqa: A002 - silence stderr access logs
        pass

    # ---- plumbing ----
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.hub.requests.append((self.command, self.path, status))

    def _json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self._read_body() if method in ("POST", "PUT") else b""
        rule = hub._take_rule(method, url.path)
        if rule is not None:
            if rule.delay > 0 and hub._stopping.wait(rule.delay):
                return
            if rule.status is not None:
                msg = f"Injected failure {rule.status} for {method} {url.path}"
                return self._json({"error": msg}, rule.status, {"X-Error-Message": msg})
        try:
            self._route(method, url.path)
        except _HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json({"error": err.message, **err.body}, err.status, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # a bug in this server: answer 500 and keep the traceback for the test to show
            hub.server_errors.append(traceback.format_exc())
            self._json({"error": "local hub server error"}, 500)

    # ---- auth ----
    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    def _require_auth(self) -> None:
        auth = self.headers.get("Authorization")
        if not auth:
            raise _HubError(401, "You must be authenticated to access this resource.")
        if auth != f"Bearer {self.hub.token}":
            raise _HubError(401, "Invalid credentials in Authorization header")

    # ---- routing ----
    def _route(self, method: str, path: str) -> None:
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            rest = parts[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml()
            if rest[:1] == ["repos"] and method == "POST" and len(rest) == 2 and rest[1] in ("create", "delete"):
                return self._create_repo() if rest[1] == "create" else self._delete_repo()
            if len(rest) >= 3 and rest[0] in ("models", "datasets", "spaces"):
                return self._repo_api(method, rest[0][:-1], f"{rest[1]}/{rest[2]}", rest[3:])
            raise _HubError(404, f"Unknown API route {method} {path}")
        if parts[0] == "lfs-objects" and len(parts) == 6:  # our LFS "storage" (the Hub's is S3 behind signed URLs)
            repo_type, repo_id, sha256 = parts[1], f"{parts[2]}/{parts[3]}", parts[4]
            if parts[5] == "upload" and method == "PUT":  # unauthenticated, like a signed S3 URL
                if self.hub.store.load_repo(repo_type, repo_id) is None:
                    raise _HubError(404, "Repository not found", "RepoNotFound")
                self.hub.store.put_lfs_object(repo_type, repo_id, sha256, self.body)
                return self._send(200)
            if parts[5] == "verify" and method == "POST":
                self._require_auth()
                if not self.hub.store.has_lfs_object(repo_type, repo_id, sha256):
                    raise _HubError(404, f"LFS object sha256:{sha256} not found")
                return self._json({"message": "verified"})
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            if method == "POST":
                return self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][: -len('.git')]}")
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            revision = unquote(parts[3])
            return self._resolve(repo_type, f"{parts[0]}/{parts[1]}", revision, unquote("/".join(parts[4:])))
        raise _HubError(404, f"Unknown route {method} {path}")

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> None:
        if not rest and method == "GET":
            return self._repo_info(repo_type, repo_id, "main")
        head = rest[0]
        if head == "revision" and len(rest) >= 2 and method == "GET":
            return self._repo_info(repo_type, repo_id, unquote("/".join(rest[1:])))
        if head == "preupload" and len(rest) >= 2 and method == "POST":
            return self._preupload(repo_type, repo_id, unquote("/".join(rest[1:])))
        if head == "commit" and len(rest) >= 2 and method == "POST":
            return self._commit(repo_type, repo_id, unquote("/".join(rest[1:])))
        if head == "tree" and len(rest) >= 2 and method == "GET":
            # the revision is quoted with safe="" (one segment); the path may be quoted or not
            return self._tree(repo_type, repo_id, unquote(rest[1]), unquote("/".join(rest[2:])))
        if head == "paths-info" and len(rest) >= 2 and method == "POST":
            return self._paths_info(repo_type, repo_id, unquote("/".join(rest[1:])))
        if head == "refs" and method == "GET":
            return self._refs(repo_type, repo_id)
        raise _HubError(404, f"Unknown repo route {method} /{'/'.join(rest)}")

    # ---- repo lookups ----
    def _repo(self, repo_type: str, repo_id: str) -> dict:
        repo = self.hub.store.load_repo(repo_type, repo_id)
        if repo is None or (repo["private"] and not self._authorized()):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _snapshot(self, repo_type: str, repo_id: str, revision: str) -> tuple[str, dict]:
        repo = self._repo(repo_type, repo_id)
        sha = repo["refs"].get(revision)
        if sha is None and re.fullmatch(r"[0-9a-f]{40}", revision):
            if (self.hub.store.repo_dir(repo_type, repo_id) / "commits" / f"{revision}.json").is_file():
                sha = revision
        if sha is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha, self.hub.store.commit(repo_type, repo_id, sha)

    # ---- endpoints ----
    def _whoami(self) -> None:
        self._require_auth()
        hub = self.hub
        self._json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": hub.user,
                "fullname": hub.user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local-hub", "role": "write"}},
            }
        )

    def _validate_yaml(self) -> None:
        payload = json.loads(self.body or b"{}")
        errors, warnings = validate_card_metadata(payload.get("content", ""), payload.get("repoType", "model"))
        status = 400 if errors else 200
        if "text/plain" in self.headers.get("Accept", ""):
            text = "\n".join(errors or warnings).encode()
            return self._send(status, text, content_type="text/plain; charset=utf-8")
        self._json(
            {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}, status
        )

    def _create_repo(self) -> None:
        self._require_auth()
        payload = json.loads(self.body or b"{}")
        repo_type = payload.get("type") or "model"
        name, namespace = payload.get("name"), payload.get("organization") or self.hub.user
        if repo_type not in REPO_TYPES:
            raise _HubError(400, f"Invalid repo type {repo_type!r}")
        if not isinstance(name, str) or not _REPO_NAME.match(name) or not _REPO_NAME.match(namespace):
            raise _HubError(400, f"Invalid repo name {namespace}/{name}")
        repo_id = f"{namespace}/{name}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.endpoint}/{prefix}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self.hub.store.lock:
            if self.hub.store.load_repo(repo_type, repo_id) is not None:
                raise _HubError(409, f"You already created this {repo_type} repo", url=url)  # the Hub sends the url
            self.hub.store.create(repo_type, repo_id, private)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        import shutil

        self._require_auth()
        payload = json.loads(self.body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload.get('name')}"
        self._repo(repo_type, repo_id)
        shutil.rmtree(self.hub.store.repo_dir(repo_type, repo_id))
        self._json({})

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_type, repo_id)
        sha, snapshot = self._snapshot(repo_type, repo_id, revision)
        card_data = None
        if "README.md" in snapshot["files"]:
            readme = self.hub.store.read_blob(repo_type, repo_id, snapshot["files"]["README.md"]["blob"]).decode()
            match = _YAML_BLOCK.match(readme)
            loaded = yaml.safe_load(match.group(2)) if match else None
            card_data = loaded if isinstance(loaded, dict) else None
        info = {
            "_id": sha[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "createdAt": repo["createdAt"],
            "lastModified": snapshot["date"],
            "private": repo["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list((card_data or {}).get("tags") or []),
            "siblings": [
                {
                    "rfilename": path,
                    "size": entry["size"],
                    "blobId": entry["oid"],
                    **(
                        {"lfs": {"size": e["size"], "sha256": e["oid"], "pointerSize": e["pointerSize"]}}
                        if (e := entry.get("lfs"))
                        else {}
                    ),
                }
                for path, entry in snapshot["files"].items()
            ],
        }
        if card_data is not None:
            info["cardData"] = card_data
        if repo_type == "model":
            info["modelId"] = repo_id
            info["library_name"] = (card_data or {}).get("library_name")
            info["pipeline_tag"] = (card_data or {}).get("pipeline_tag")
            if card_data and "model-index" in card_data:
                info["model-index"] = card_data["model-index"]
        self._json(info)

    def _refs(self, repo_type: str, repo_id: str) -> None:
        repo = self._repo(repo_type, repo_id)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo["refs"].items()]
        self._json({"branches": branches, "tags": [], "converts": []})

    def _entries(self, repo_type: str, repo_id: str, sha: str, snapshot: dict, expand: bool) -> dict[str, dict]:
        """Every file and folder of a snapshot, keyed by path, in the tree-API JSON shape."""
        last_commit = {"id": sha, "title": snapshot["message"], "date": snapshot["date"]}
        entries: dict[str, dict] = {}
        for path, entry in snapshot["files"].items():
            entries[path] = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
            if "lfs" in entry:
                entries[path]["lfs"] = dict(entry["lfs"])
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in entries:
                    tree_id = hashlib.sha1(f"{sha}:{folder}".encode()).hexdigest()
                    entries[folder] = {"type": "directory", "oid": tree_id, "size": 0, "path": folder}
        if expand:
            for entry in entries.values():
                entry["lastCommit"] = last_commit
        return entries

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        sha, snapshot = self._snapshot(repo_type, repo_id, revision)
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = self._entries(repo_type, repo_id, sha, snapshot, expand)
        path = path.strip("/")
        if path and entries.get(path, {}).get("type") != "directory":
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        prefix = f"{path}/" if path else ""
        out = []
        for name, entry in sorted(entries.items()):
            if not name.startswith(prefix):
                continue
            if recursive or "/" not in name[len(prefix) :]:
                out.append(entry)
        self._json(out, headers={"X-Repo-Commit": sha})

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        sha, snapshot = self._snapshot(repo_type, repo_id, revision)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = json.loads(self.body or b"{}")
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = parse_qs(self.body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[0].lower() in ("1", "true")
        entries = self._entries(repo_type, repo_id, sha, snapshot, expand)
        self._json([entries[p.strip("/")] for p in paths if p.strip("/") in entries], headers={"X-Repo-Commit": sha})

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_auth()
        sha, snapshot = self._snapshot(repo_type, repo_id, revision)
        payload = json.loads(self.body or b"{}")
        files = []
        for f in payload.get("files", []):
            mode = _upload_mode(f["path"], base64.b64decode(f.get("sample", "")), int(f.get("size", 0)))
            remote = snapshot["files"].get(f["path"], {})
            # huggingface_hub skips unchanged files by comparing this oid with its own (sha256 for LFS, git sha1 else)
            remote_oid = (
                remote.get("lfs", {}).get("oid") if mode == "lfs" else (None if "lfs" in remote else remote.get("oid"))
            )
            files.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": remote_oid})
        self._json({"files": files, "commitOid": sha})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_auth()
        if self.query.get("create_pr", ["0"])[0] in ("1", "true"):
            raise _HubError(400, "The local hub does not support pull requests (create_pr=True).")
        store = self.hub.store
        with store.lock:
            sha, _ = self._snapshot(repo_type, repo_id, revision)
            if revision not in self._repo(repo_type, repo_id)["refs"]:
                raise _HubError(400, f"Can only commit to a branch, got revision {revision!r}")
            header, added, deleted, readme = {}, {}, [], None
            for line in self.body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    header = value
                elif key == "file":
                    if value.get("encoding") != "base64":
                        raise _HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                    data = base64.b64decode(value["content"])
                    added[value["path"]] = store.regular_entry(repo_type, repo_id, data)
                    readme = data if value["path"] == "README.md" else readme
                elif key in ("deletedFile", "deletedFolder"):
                    deleted.append(value["path"])
                elif key == "lfsFile":
                    if value.get("algo", "sha256") != "sha256":
                        raise _HubError(400, f"Unsupported LFS hash algorithm {value.get('algo')!r}")
                    size = value.get("size")
                    if size is None:
                        size = (store.repo_dir(repo_type, repo_id) / "blobs" / value["oid"]).stat().st_size
                    added[value["path"]] = store.lfs_entry(repo_type, repo_id, value["oid"], int(size))
                else:
                    raise _HubError(400, f"Unknown commit operation {key!r}")
            if not header.get("summary"):
                raise _HubError(400, "A commit needs a summary (commit message).")
            parent = header.get("parentCommit")
            if parent is not None and parent != sha:
                raise _HubError(412, f"A commit has happened since {parent}; the head is now {sha}.")
            if readme is not None:
                errors, _ = validate_card_metadata(readme.decode("utf-8", "replace"), repo_type)
                if errors:
                    raise _HubError(400, "Invalid metadata in README.md: " + "; ".join(errors))
            new_sha = store.write_commit(repo_type, repo_id, sha, header["summary"], added, deleted)
            repo = store.load_repo(repo_type, repo_id)
            repo["refs"][revision] = new_sha
            store.save_repo(repo_type, repo_id, repo)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.endpoint}/{prefix}{repo_id}/commit/{new_sha}"
        self._json({"success": True, "commitOid": new_sha, "commitUrl": url, "pullRequestUrl": None})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        """Git LFS batch API (basic transfer): where to PUT each object and where to confirm it."""
        self._require_auth()
        self._repo(repo_type, repo_id)
        payload = json.loads(self.body or b"{}")
        if payload.get("operation") != "upload":
            raise _HubError(400, "The local hub only implements LFS uploads (downloads go through /resolve/).")
        objects = []
        for obj in payload.get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.hub.store.has_lfs_object(repo_type, repo_id, obj["oid"]):  # else: already stored, skip
                base = f"{self.hub.endpoint}/lfs-objects/{repo_type}/{repo_id}/{obj['oid']}"
                item["actions"] = {
                    "upload": {"href": f"{base}/upload", "header": {}},
                    "verify": {"href": f"{base}/verify"},
                }
            objects.append(item)
        self._json({"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        sha, snapshot = self._snapshot(repo_type, repo_id, revision)
        entry = snapshot["files"].get(path)
        if entry is None:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        data = self.hub.store.read_blob(repo_type, repo_id, entry["blob"])
        # the Hub's ETag is the git oid for regular files and the sha256 for LFS files (it redirects those to a CDN
        # and sends X-Linked-Etag/X-Linked-Size; served directly here)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if "lfs" in entry:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry["size"])})
        status = 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and data:
            start = int(match.group(1)) if match.group(1) else max(len(data) - int(match.group(2) or 0), 0)
            end = int(match.group(2)) if match.group(1) and match.group(2) else len(data) - 1
            end = min(end, len(data) - 1)
            if start > end:
                raise _HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"*/{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")
