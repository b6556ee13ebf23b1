"""A Hugging Face Hub-compatible HTTP server for the tests: repos on disk with real commits and revisions.

The unmodified `huggingface_hub` client talks HTTP to it (nothing is mocked):

    with serve(tmp_path / "hub") as hub:        # `hub` is the endpoint URL (a str) with test helpers
      api = HfApi(endpoint=hub, token="hf_test")
      api.create_repo("org/name", exist_ok=True)
      api.upload_folder(repo_id="org/name", folder_path=folder)
      hf_hub_download("org/name", "model.bin", endpoint=hub, cache_dir=cache)
      hub.tamper("org/name", "model.bin")       # corrupt the stored bytes, keep the advertised ETag/sha
      hub.count("resolve")                      # requests per route, to assert "no network call"

or from a shell: `python tests/hub_server.py --root /tmp/hub --port 8080`, then `HF_ENDPOINT=http://127.0.0.1:8080`.

Storage under `root`: `blobs/ab/<sha256>` (content-addressed, shared by all repos) and
`repos/<type>s/<namespace>/<name>/{repo.json, commits/<id>.json}`. A commit has a 40-hex id, its parent and the
full file map `path -> {sha256, size, oid}` (`oid` = git blob sha1); branches and tags point at commits, and every
commit stays addressable by its id. New repos get an "initial commit" holding `.gitattributes`, like the Hub.

Uploads: `preupload` answers `uploadMode: "regular"` for every file, so the client commits the bytes inline
(base64 in the NDJSON commit) and never needs LFS or Xet. Downloads: a file is served like a git blob
(`ETag` = git sha1); with `lfs_threshold=N` files of N bytes or more are served like LFS files instead
(`X-Linked-Etag` = sha256, `X-Linked-Size`, tree entries with an `lfs` record), so the cache's blob names are
sha256. No response ever carries Xet headers, so downloads are plain HTTP GETs even with `hf_xet` installed.

Routes (the ones `huggingface_hub` 2.4 calls; `{t}` is models|datasets|spaces, `{repo}` is namespace/name):
  GET  /api/whoami-v2                          POST /api/repos/create           DELETE /api/repos/delete
  POST /api/validate-yaml                      GET  /api/{t}/{repo}[/revision/{rev}]       (repo info)
  GET  /api/{t}/{repo}/tree/{rev}[/{path}]     POST /api/{t}/{repo}/paths-info/{rev}
  POST /api/{t}/{repo}/preupload/{rev}         POST /api/{t}/{repo}/commit/{rev}          (NDJSON)
  GET  /api/{t}/{repo}/refs                    GET  /api/{t}/{repo}/commits/{rev}
  POST|DELETE /api/{t}/{repo}/branch/{name}    POST|DELETE /api/{t}/{repo}/tag/{rev|name}
  HEAD|GET [/{t}]/{repo}/resolve/{rev}/{path}  (Range supported)
Errors carry the `X-Error-Code` the client maps to typed errors: RepoNotFound -> RepositoryNotFoundError,
RevisionNotFound -> RevisionNotFoundError, EntryNotFound -> (Remote)EntryNotFoundError.
Not implemented: pull requests (`create_pr=True` -> 400), LFS/Xet upload protocols, gated repos.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import re
import socket
import threading
import traceback
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["HubServer", "HubStore", "HubError", "Request", "serve"]

REPO_TYPES = ("model", "dataset", "space")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_GITATTRIBUTES = b"".join(
  f"{pattern} filter=lfs diff=lfs merge=lfs -text\n".encode()
  for pattern in ("*.bin", "*.h5", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.pt", "*.pth", "*.safetensors",
                  "*.tar.*", "*.zip", "*.zst", "*tfevents*")
)


class HubError(Exception):
  """An HTTP error answer: status, the Hub's `X-Error-Code` (or None), a message, extra headers."""

  def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
    super().__init__(message)
    self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_oid(data: bytes) -> str:
  return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
  return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _check_path(path: str) -> str:
  parts = path.split("/")
  if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
    raise HubError(400, None, f"Invalid path in repo: {path!r}")
  return path


def _atomic_write(path: pathlib.Path, data: bytes) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)


class HubStore:
  """Repos, commits, refs and content-addressed blobs on disk under `root`; every public method is thread-safe.

  Arguments:
    root: directory holding `blobs/` and `repos/` (created; an existing store is reopened as it is).
    user: the account `whoami` reports and the namespace of repos created without one.
    lfs_threshold: files of at least this many bytes are served as LFS files (sha256 ETag); None: none are.
    gitattributes: whether a new repo starts with the Hub's "initial commit" holding `.gitattributes`.
  """

  def __init__(self, root: str | os.PathLike, *, user: str = "tester", lfs_threshold: int | None = None,
               gitattributes: bool = True):
    self.root = pathlib.Path(root)
    self.user = user
    self.lfs_threshold = lfs_threshold
    self.gitattributes = gitattributes
    self.lock = threading.RLock()
    self._commit_cache: dict[str, dict] = {}
    (self.root / "blobs").mkdir(parents=True, exist_ok=True)
    (self.root / "repos").mkdir(parents=True, exist_ok=True)

  # -- blobs
  def blob_path(self, sha256: str) -> pathlib.Path:
    return self.root / "blobs" / sha256[:2] / sha256

  def put_blob(self, data: bytes) -> dict:
    """Stores `data` content-addressed; returns its file entry `{sha256, size, oid}`."""
    sha = hashlib.sha256(data).hexdigest()
    path = self.blob_path(sha)
    with self.lock:
      if not path.exists():
        _atomic_write(path, data)
    return {"sha256": sha, "size": len(data), "oid": _git_oid(data)}

  def read_blob(self, entry: dict) -> bytes:
    return self.blob_path(entry["sha256"]).read_bytes()

  def is_lfs(self, entry: dict) -> bool:
    return self.lfs_threshold is not None and entry["size"] >= self.lfs_threshold

  def etag(self, entry: dict) -> str:
    """The ETag the Hub advertises: sha256 for an LFS file, git blob sha1 otherwise."""
    return entry["sha256"] if self.is_lfs(entry) else entry["oid"]

  # -- repos
  def _dir(self, repo_type: str, repo_id: str) -> pathlib.Path:
    if repo_type not in REPO_TYPES:
      raise HubError(400, None, f"Invalid repo type {repo_type!r}")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) and ".." not in p for p in parts):
      raise HubError(404, "RepoNotFound", f"Repository Not Found: {repo_id!r} is not a valid namespace/name")
    return self.root / "repos" / f"{repo_type}s" / parts[0] / parts[1]

  def repo_meta(self, repo_type: str, repo_id: str) -> dict:
    path = self._dir(repo_type, repo_id) / "repo.json"
    with self.lock:
      if not path.is_file():
        raise HubError(404, "RepoNotFound", f"Repository not found: {repo_type} {repo_id}")
      return json.loads(path.read_text())

  def _save_meta(self, repo_type: str, repo_id: str, meta: dict) -> None:
    _atomic_write(self._dir(repo_type, repo_id) / "repo.json", json.dumps(meta, indent=1).encode())

  def repo_exists(self, repo_type: str, repo_id: str) -> bool:
    return (self._dir(repo_type, repo_id) / "repo.json").is_file()

  def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> bool:
    """Creates an empty repo (plus the initial commit); False if it already exists."""
    with self.lock:
      if self.repo_exists(repo_type, repo_id):
        return False
      meta = {"id": repo_id, "type": repo_type, "private": private, "createdAt": _now(), "branches": {},
              "tags": {}}
      if self.gitattributes:
        entry = self.put_blob(_GITATTRIBUTES)
        meta["branches"]["main"] = self._write_commit(repo_type, repo_id, None, {".gitattributes": entry},
                                                      "initial commit", "")
      else:
        meta["branches"]["main"] = self._write_commit(repo_type, repo_id, None, {}, "initial commit", "")
      self._save_meta(repo_type, repo_id, meta)
      return True

  def delete_repo(self, repo_id: str, *, repo_type: str = "model") -> None:
    import shutil

    with self.lock:
      self.repo_meta(repo_type, repo_id)
      shutil.rmtree(self._dir(repo_type, repo_id))

  # -- commits
  def _write_commit(self, repo_type: str, repo_id: str, parent: str | None, files: dict, title: str,
                    message: str) -> str:
    body = {"parents": [parent] if parent else [], "title": title, "message": message, "date": _now(),
            "authors": [self.user], "files": dict(sorted(files.items())), "nonce": uuid.uuid4().hex}
    cid = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
    record = {"id": cid, **body}
    _atomic_write(self._dir(repo_type, repo_id) / "commits" / f"{cid}.json", json.dumps(record).encode())
    self._commit_cache[f"{repo_type}/{repo_id}/{cid}"] = record
    return cid

  def read_commit(self, repo_type: str, repo_id: str, cid: str) -> dict:
    key = f"{repo_type}/{repo_id}/{cid}"
    with self.lock:
      if key not in self._commit_cache:
        path = self._dir(repo_type, repo_id) / "commits" / f"{cid}.json"
        if not _COMMIT.match(cid) or not path.is_file():
          raise HubError(404, "RevisionNotFound", f"Invalid rev id: {cid}")
        self._commit_cache[key] = json.loads(path.read_text())
      return self._commit_cache[key]

  def resolve(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> dict:
    """The commit record a branch, tag (also as refs/heads/X, refs/tags/X) or commit id points at."""
    with self.lock:
      meta = self.repo_meta(repo_type, repo_id)
      name = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
      cid = meta["branches"].get(name) or meta["tags"].get(name)
      if cid is None and _COMMIT.match(revision):
        cid = revision
      if cid is None:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
      return self.read_commit(repo_type, repo_id, cid)

  def history(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> list[dict]:
    """Commits reachable from `revision`, newest first."""
    out = [self.resolve(repo_id, revision, repo_type=repo_type)]
    while out[-1]["parents"]:
      out.append(self.read_commit(repo_type, repo_id, out[-1]["parents"][0]))
    return out

  def commit(self, repo_id: str, operations: list[tuple[str, str, Any]], *, revision: str = "main",
             repo_type: str = "model", title: str = "Update", message: str = "",
             parent_commit: str | None = None) -> str:
    """Applies operations in order on top of branch `revision` and moves the branch; returns the commit id.

    Arguments:
      operations: `("add", path, bytes)`, `("add_blob", path, sha256)` (content already stored),
        `("delete", path, None)`, `("delete_folder", path, None)`.
      parent_commit: if given and not the branch head, the commit is refused (412) like on the Hub.
    """
    with self.lock:
      meta = self.repo_meta(repo_type, repo_id)
      branch = revision.removeprefix("refs/heads/")
      if branch not in meta["branches"]:
        if branch in meta["tags"] or _COMMIT.match(branch):
          raise HubError(400, None, f"Cannot commit to {revision!r}: not a branch")
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
      head = meta["branches"][branch]
      if parent_commit is not None and parent_commit != head:
        raise HubError(412, None, f"A commit has happened since: parent commit {parent_commit} is not the head "
                                  f"{head} of {branch}")
      files = dict(self.read_commit(repo_type, repo_id, head)["files"])
      for kind, path, payload in operations:
        path = _check_path(path.rstrip("/") if kind == "delete_folder" else path)
        if kind == "add":
          files[path] = self.put_blob(payload)
        elif kind == "add_blob":
          if not self.blob_path(payload).is_file():
            raise HubError(422, None, f"LFS object {payload} for {path} was never uploaded")
          files[path] = {"sha256": payload, "size": self.blob_path(payload).stat().st_size,
                         "oid": _git_oid(self.blob_path(payload).read_bytes())}
        elif kind == "delete":
          if files.pop(path, None) is None:
            raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
        elif kind == "delete_folder":
          doomed = [p for p in files if p.startswith(path + "/")]
          if not doomed:
            raise HubError(404, "EntryNotFound", f"A folder with this name doesn't exist: {path}")
          for p in doomed:
            del files[p]
        else:
          raise HubError(400, None, f"Unknown operation {kind!r}")
      cid = self._write_commit(repo_type, repo_id, head, files, title, message)
      meta["branches"][branch] = cid
      self._save_meta(repo_type, repo_id, meta)
      return cid

  def upload(self, repo_id: str, files: dict[str, bytes], *, message: str = "Upload", revision: str = "main",
             repo_type: str = "model") -> str:
    """Server-side seeding without HTTP: one commit adding `files`; creates the repo if needed."""
    self.create_repo(repo_id, repo_type=repo_type)
    return self.commit(repo_id, [("add", p, d) for p, d in files.items()], revision=revision,
                       repo_type=repo_type, title=message)

  # -- refs
  def create_ref(self, repo_id: str, kind: str, name: str, revision: str = "main", *,
                 repo_type: str = "model") -> str:
    """Creates branch or tag (`kind` = "branches" | "tags") `name` at `revision`; 409 if it exists."""
    with self.lock:
      cid = self.resolve(repo_id, revision, repo_type=repo_type)["id"]
      meta = self.repo_meta(repo_type, repo_id)
      if not name or ".." in name or name.startswith("/") or name.endswith("/") or _COMMIT.match(name):
        raise HubError(400, None, f"Invalid reference name {name!r}")
      if name in meta["branches"] or name in meta["tags"]:
        raise HubError(409, None, f"Reference already exists: {name}")
      meta[kind][name] = cid
      self._save_meta(repo_type, repo_id, meta)
      return cid

  def delete_ref(self, repo_id: str, kind: str, name: str, *, repo_type: str = "model") -> None:
    with self.lock:
      meta = self.repo_meta(repo_type, repo_id)
      if name not in meta[kind]:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {name}")
      if kind == "branches" and name == "main":
        raise HubError(403, None, "Cannot delete the main branch")
      del meta[kind][name]
      self._save_meta(repo_type, repo_id, meta)

  # -- faults
  def tamper(self, repo_id: str, path: str, data: bytes | None = None, *, revision: str = "main",
             repo_type: str = "model") -> bytes:
    """Overwrites the stored bytes of `path` at `revision` in place, keeping its advertised ETag, sha256 and size.

    `data=None` flips every bit of the middle byte (same length). The blob store is content-addressed, so every
    file with the same content, in any repo or commit, is corrupted too. Returns the original bytes (to restore:
    `tamper(..., data=original)`).
    """
    with self.lock:
      files = self.resolve(repo_id, revision, repo_type=repo_type)["files"]
      if path not in files:
        raise KeyError(f"{path!r} not in {repo_id}@{revision}")
      blob = self.blob_path(files[path]["sha256"])
      original = blob.read_bytes()
      if data is None:
        if not original:
          raise ValueError(f"{path!r} is empty: pass the bytes to store instead")
        middle = len(original) // 2
        data = original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1:]
      blob.write_bytes(data)
      return original


class Request(NamedTuple):
  """One request the server answered: method, route name, raw path, the bearer token sent (or None)."""

  method: str
  route: str
  path: str
  token: str | None


class _Answer(Exception):
  """Raised by a route to send a finished response (status, headers, body)."""

  def __init__(self, status: int, headers: dict[str, str], body: bytes = b"", file: pathlib.Path | None = None,
               span: tuple[int, int] | None = None):
    self.status, self.headers, self.body, self.file, self.span = status, headers, body, file, span


def _truthy(values: list[str] | None) -> bool:
  return bool(values) and values[0].lower() in ("1", "true", "yes")


def _card_data(readme: bytes) -> dict | None:
  """The YAML front matter of a model card, if any and if PyYAML (a huggingface_hub dependency) parses it."""
  text = readme.decode("utf-8", "replace")
  match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
  if not match:
    return None
  try:
    import yaml

    data = yaml.safe_load(match.group(1))
  except Exception:
    return None
  return data if isinstance(data, dict) else None


class _Handler(BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  server_version = "nnx-zoo-test-hub/1.0"
  timeout = 60  # idle keep-alive connections are closed after this many seconds

  # -- plumbing
  def log_message(self, format: str, *args: Any) -> None:
    if self.server.verbose:
      super().log_message(format, *args)

  def do_GET(self): self._dispatch("GET")  # noqa: E704
  def do_HEAD(self): self._dispatch("HEAD")  # noqa: E704
  def do_POST(self): self._dispatch("POST")  # noqa: E704
  def do_PUT(self): self._dispatch("PUT")  # noqa: E704
  def do_DELETE(self): self._dispatch("DELETE")  # noqa: E704

  def _read_body(self) -> bytes:
    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
      chunks = []
      for _ in range(1 << 20):  # bounded
        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
          while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
          break
        chunks.append(self.rfile.read(size))
        self.rfile.readline()
      return b"".join(chunks)
    length = int(self.headers.get("Content-Length") or 0)
    return self.rfile.read(length) if length else b""

  def _token(self) -> str | None:
    auth = self.headers.get("Authorization", "")
    return auth[7:].strip() or None if auth.lower().startswith("bearer ") else None

  def _dispatch(self, method: str) -> None:
    state: HubServer = self.server.hub
    split = urlsplit(self.path)
    segments = [unquote(s) for s in split.path.split("/")[1:]]
    self.query = parse_qs(split.query, keep_blank_values=True)
    self.base_url = f"http://{self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]}"
    try:
      body = self._read_body()
      route, handler, args = self._route(method, segments)
    except Exception:  # unreadable request
      self.close_connection = True
      route, handler, args, body = "bad_request", None, (), b""
    token = self._token()
    state._record(Request(method, route, self.path, token))
    try:
      fault = state._take_fault(route)
      if fault is not None:
        raise HubError(fault, None, f"Injected fault: {route} answers {fault}")
      if handler is None:
        raise HubError(404, None, f"Sorry, we can't find the page you are looking for ({method} {split.path})")
      if state.require_token and method not in ("GET", "HEAD") and token is None:
        raise HubError(401, None, "Invalid credentials in Authorization header")
      handler(method, body, token, *args)
      raise HubError(500, None, f"route {route} gave no answer")
    except _Answer as answer:
      self._send(method, answer)
    except HubError as e:
      headers = {"X-Error-Message": e.message.encode("ascii", "replace").decode(), **e.headers}
      if e.code:
        headers["X-Error-Code"] = e.code
      self._send(method, self._json(e.status, {"error": e.message}, headers))
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True
    except Exception as e:  # a bug in this server: say so loudly
      traceback.print_exc()
      self._send(method, self._json(500, {"error": f"test hub server crashed: {e!r}"}))

  def _send(self, method: str, answer: _Answer) -> None:
    try:
      self.send_response(answer.status)
      length = len(answer.body) if answer.file is None else answer.span[1] - answer.span[0]
      for key, value in answer.headers.items():
        self.send_header(key, value)
      self.send_header("Content-Length", str(length))
      self.end_headers()
      if method == "HEAD":
        return
      if answer.file is None:
        self.wfile.write(answer.body)
        return
      with open(answer.file, "rb") as f:
        f.seek(answer.span[0])
        remaining = length
        while remaining > 0:
          chunk = f.read(min(remaining, 1 << 20))
          if not chunk:
            break
          self.wfile.write(chunk)
          remaining -= len(chunk)
      if remaining > 0:  # the blob shrank under us (tampered): make the client see a short read
        self.close_connection = True
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True

  @staticmethod
  def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
                   json.dumps(obj).encode())

  # -- routing
  def _route(self, method: str, s: list[str]) -> tuple[str, Any, tuple]:
    if s and s[0] == "api":
      if s[1:] == ["whoami-v2"] and method == "GET":
        return "whoami", self._whoami, ()
      if s[1:] == ["repos", "create"] and method == "POST":
        return "create_repo", self._create_repo, ()
      if s[1:] == ["repos", "delete"] and method == "DELETE":
        return "delete_repo", self._delete_repo, ()
      if s[1:] == ["validate-yaml"] and method == "POST":
        return "validate_yaml", self._validate_yaml, ()
      if len(s) >= 4 and s[1] in ("models", "datasets", "spaces"):
        repo_type, repo_id, rest = s[1][:-1], f"{s[2]}/{s[3]}", s[4:]
        table = {
          ("GET", ""): ("info", 0), ("GET", "revision"): ("info", 1), ("GET", "tree"): ("tree", -1),
          ("POST", "paths-info"): ("paths_info", 1), ("POST", "preupload"): ("preupload", 1),
          ("POST", "commit"): ("commit", 1), ("GET", "refs"): ("refs", 0), ("GET", "commits"): ("commits", 1),
          ("POST", "branch"): ("branch", 1), ("DELETE", "branch"): ("branch", 1),
          ("POST", "tag"): ("tag", 1), ("DELETE", "tag"): ("tag", 1),
        }
        key = (method, rest[0] if rest else "")
        if key in table:
          route, n_args = table[key]
          args = rest[1:]
          if n_args == -1 and args:  # tree/{rev}[/{path...}]
            return route, getattr(self, f"_{route}"), (repo_type, repo_id, args[0], "/".join(args[1:]))
          if len(args) == n_args:
            return route, getattr(self, f"_{route}"), (repo_type, repo_id, *args)
      return "unknown", None, ()
    if "resolve" in s and method in ("GET", "HEAD"):
      i = s.index("resolve")
      prefix, rev, path = s[:i], s[i + 1:i + 2], "/".join(s[i + 2:])
      repo_type = "model"
      if prefix and prefix[0] in ("datasets", "spaces") and len(prefix) == 3:
        repo_type, prefix = prefix[0][:-1], prefix[1:]
      if len(prefix) == 2 and rev and path:
        return "resolve", self._resolve, (repo_type, "/".join(prefix), rev[0], path)
    return "unknown", None, ()

  # -- helpers for routes
  def _repo_url(self, repo_type: str, repo_id: str) -> str:
    return f"{self.base_url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"

  def _check_read(self, repo_type: str, repo_id: str, token: str | None) -> dict:
    meta = self.server.hub.store.repo_meta(repo_type, repo_id)
    if meta.get("private") and token is None:
      raise HubError(401, "RepoNotFound", "Invalid username or password.")
    return meta

  def _tree_entry(self, path: str, entry: dict) -> dict:
    store = self.server.hub.store
    out = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
    if store.is_lfs(entry):
      pointer = _lfs_pointer(entry["sha256"], entry["size"])
      out["oid"] = _git_oid(pointer)
      out["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}
    return out

  @staticmethod
  def _folder_entry(path: str, files: dict) -> dict:
    inside = sorted((p[len(path) + 1:], e["oid"]) for p, e in files.items() if p.startswith(path + "/"))
    return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0,
            "path": path}

  def _last_commit(self, repo_type: str, repo_id: str, commit: dict, path: str, is_dir: bool) -> dict:
    store = self.server.hub.store

    def view(c: dict) -> Any:
      if is_dir:
        return sorted((p, e["sha256"]) for p, e in c["files"].items() if p.startswith(path + "/"))
      return c["files"].get(path)

    current = commit
    for _ in range(100_000):  # bounded walk to the commit that last changed `path`
      if not current["parents"]:
        break
      parent = store.read_commit(repo_type, repo_id, current["parents"][0])
      if view(parent) != view(current):
        break
      current = parent
    return {"id": current["id"], "title": current["title"], "date": current["date"]}

  # -- routes
  def _whoami(self, method, body, token):
    if token is None:
      raise HubError(401, None, "Invalid credentials in Authorization header")
    user = self.server.hub.store.user
    raise self._json(200, {
      "type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user, "fullname": user,
      "email": f"{user}@example.invalid", "emailVerified": True, "canPay": False, "isPro": False,
      "periodEnd": None, "avatarUrl": "", "orgs": [],
      "auth": {"type": "access_token", "accessToken": {"displayName": "test-token", "role": "write",
                                                       "createdAt": "2024-01-01T00:00:00.000Z"}},
    })

  def _create_repo(self, method, body, token):
    payload = json.loads(body or b"{}")
    repo_type = payload.get("type") or "model"
    repo_id = f"{payload.get('organization') or self.server.hub.store.user}/{payload.get('name')}"
    private = payload.get("private", payload.get("visibility") == "private")
    url = self._repo_url(repo_type, repo_id)
    if not self.server.hub.store.create_repo(repo_id, repo_type=repo_type, private=bool(private)):
      message = f"You already created this {repo_type} repo"
      raise self._json(409, {"error": message, "url": url}, {"X-Error-Message": message})
    raise self._json(200, {"url": url, "name": repo_id, "id": repo_id})

  def _delete_repo(self, method, body, token):
    payload = json.loads(body or b"{}")
    repo_id = f"{payload.get('organization') or self.server.hub.store.user}/{payload.get('name')}"
    self.server.hub.store.delete_repo(repo_id, repo_type=payload.get("type") or "model")
    raise self._json(200, {})

  def _validate_yaml(self, method, body, token):
    content = json.loads(body or b"{}").get("content", "")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
    if match:
      try:
        import yaml

        data = yaml.safe_load(match.group(1))
        if data is not None and not isinstance(data, dict):
          raise ValueError("metadata must be a mapping")
      except ImportError:
        pass
      except Exception as e:
        raise self._json(400, {"errors": [{"message": f"Invalid YAML metadata: {e}"}], "warnings": []})
    raise self._json(200, {"errors": [], "warnings": []})

  def _info(self, method, body, token, repo_type, repo_id, revision="main"):
    store = self.server.hub.store
    meta = self._check_read(repo_type, repo_id, token)
    commit = store.resolve(repo_id, revision, repo_type=repo_type)
    blobs = _truthy(self.query.get("blobs"))
    siblings = []
    for path, entry in commit["files"].items():
      sibling = {"rfilename": path}
      if blobs:
        sibling.update(size=entry["size"], blobId=self._tree_entry(path, entry)["oid"])
        if store.is_lfs(entry):
          sibling["lfs"] = {"size": entry["size"], "sha256": entry["sha256"],
                            "pointerSize": len(_lfs_pointer(entry["sha256"], entry["size"]))}
      siblings.append(sibling)
    card = _card_data(store.read_blob(commit["files"]["README.md"])) if "README.md" in commit["files"] else None
    card_tags = (card or {}).get("tags")
    tags = [str(t) for t in card_tags] if isinstance(card_tags, list) else []
    if card and card.get("library_name"):
      tags.insert(0, str(card["library_name"]))
    info = {
      "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24], "id": repo_id,
      "author": repo_id.split("/")[0], "sha": commit["id"], "lastModified": commit["date"],
      "createdAt": meta["createdAt"], "private": bool(meta.get("private")), "gated": False, "disabled": False,
      "downloads": 0, "likes": 0, "tags": tags, "siblings": siblings,
      "usedStorage": sum(e["size"] for e in commit["files"].values()),
    }
    if repo_type == "model":
      info.update(modelId=repo_id, library_name=(card or {}).get("library_name"),
                  pipeline_tag=(card or {}).get("pipeline_tag"), spaces=[])
    if card is not None:
      info["cardData"] = card
    raise self._json(200, info)

  def _tree(self, method, body, token, repo_type, repo_id, revision, path):
    store = self.server.hub.store
    self._check_read(repo_type, repo_id, token)
    commit = store.resolve(repo_id, revision, repo_type=repo_type)
    files = commit["files"]
    path = path.strip("/")
    recursive, expand = _truthy(self.query.get("recursive")), _truthy(self.query.get("expand"))
    if path and path in files:
      raise HubError(404, "EntryNotFound", f"{path} is a file, not a directory", {"X-Repo-Commit": commit["id"]})
    prefix = path + "/" if path else ""
    under = sorted(p for p in files if p.startswith(prefix))
    if path and not under:
      raise HubError(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": commit["id"]})
    entries, seen_dirs = [], set()
    for p in under:
      parts = p[len(prefix):].split("/")
      for depth in range(1, len(parts)):
        folder = prefix + "/".join(parts[:depth])
        if folder not in seen_dirs and (recursive or depth == 1):
          seen_dirs.add(folder)
          entries.append(self._folder_entry(folder, files))
      if recursive or len(parts) == 1:
        entries.append(self._tree_entry(p, files[p]))
    if expand:
      for e in entries:
        e["lastCommit"] = self._last_commit(repo_type, repo_id, commit, e["path"], e["type"] == "directory")
    self._paginate(entries, 50 if expand else self.server.hub.page_size)

  def _paginate(self, items: list, page_size: int):
    start = int((self.query.get("cursor") or ["0"])[0] or 0)
    page = items[start:start + page_size]
    headers = {}
    if start + page_size < len(items):
      query = {k: v[0] for k, v in self.query.items()}
      query["cursor"] = str(start + page_size)
      qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
      headers["Link"] = f'<{self.base_url}{urlsplit(self.path).path}?{qs}>; rel="next"'
    raise self._json(200, page, headers)

  def _paths_info(self, method, body, token, repo_type, repo_id, revision):
    store = self.server.hub.store
    self._check_read(repo_type, repo_id, token)
    commit = store.resolve(repo_id, revision, repo_type=repo_type)
    if "json" in self.headers.get("Content-Type", ""):
      form = json.loads(body or b"{}")
      paths, expand = form.get("paths", []), bool(form.get("expand"))
    else:
      form = parse_qs(body.decode(), keep_blank_values=True)
      paths, expand = form.get("paths", []), _truthy(form.get("expand"))
    out = []
    for p in paths:
      p = p.strip("/")
      if p in commit["files"]:
        e = self._tree_entry(p, commit["files"][p])
      elif any(q.startswith(p + "/") for q in commit["files"]):
        e = self._folder_entry(p, commit["files"])
      else:
        continue
      if expand:
        e["lastCommit"] = self._last_commit(repo_type, repo_id, commit, p, e["type"] == "directory")
      out.append(e)
    raise self._json(200, out)

  def _preupload(self, method, body, token, repo_type, repo_id, revision):
    store = self.server.hub.store
    if _truthy(self.query.get("create_pr")):
      raise HubError(400, None, "create_pr is not supported by the test hub server")
    commit = store.resolve(repo_id, revision, repo_type=repo_type)
    files = []
    for f in json.loads(body or b"{}").get("files", []):
      existing = commit["files"].get(f["path"])
      files.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                    "oid": existing["oid"] if existing else None})
    raise self._json(200, {"files": files, "commitOid": commit["id"]})

  def _commit(self, method, body, token, repo_type, repo_id, revision):
    store = self.server.hub.store
    if _truthy(self.query.get("create_pr")):
      raise HubError(400, None, "create_pr is not supported by the test hub server")
    store.repo_meta(repo_type, repo_id)
    header, operations = None, []
    for line in body.splitlines():
      if not line.strip():
        continue
      item = json.loads(line)
      key, value = item.get("key"), item.get("value") or {}
      if key == "header":
        header = value
      elif key == "file":
        if value.get("encoding", "base64") != "base64":
          raise HubError(400, None, f"Unsupported encoding {value.get('encoding')!r}")
        operations.append(("add", value["path"], base64.b64decode(value["content"])))
      elif key == "lfsFile":
        operations.append(("add_blob", value["path"], value["oid"]))
      elif key == "deletedFile":
        operations.append(("delete", value["path"], None))
      elif key == "deletedFolder":
        operations.append(("delete_folder", value["path"], None))
      else:
        raise HubError(400, None, f"Unknown commit line key {key!r}")
    if header is None:
      raise HubError(400, None, "Commit payload has no header line")
    cid = store.commit(repo_id, operations, revision=revision, repo_type=repo_type,
                       title=header.get("summary") or "Update", message=header.get("description") or "",
                       parent_commit=header.get("parentCommit"))
    raise self._json(200, {"success": True, "commitOid": cid, "hookOutput": "",
                           "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{cid}"})

  def _refs(self, method, body, token, repo_type, repo_id):
    meta = self._check_read(repo_type, repo_id, token)

    def refs(kind: str, prefix: str) -> list[dict]:
      return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": c} for n, c in sorted(meta[kind].items())]

    raise self._json(200, {"branches": refs("branches", "refs/heads/"), "converts": [],
                           "tags": refs("tags", "refs/tags/"), "pullRequests": []})

  def _commits(self, method, body, token, repo_type, repo_id, revision):
    self._check_read(repo_type, repo_id, token)
    history = self.server.hub.store.history(repo_id, revision, repo_type=repo_type)
    items = [{"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
              "authors": [{"user": a} for a in c["authors"]]} for c in history]
    self._paginate(items, 50)

  def _branch(self, method, body, token, repo_type, repo_id, branch):
    store = self.server.hub.store
    if method == "DELETE":
      store.delete_ref(repo_id, "branches", branch, repo_type=repo_type)
    else:
      start = json.loads(body or b"{}").get("startingPoint") or "main"
      store.create_ref(repo_id, "branches", branch, start, repo_type=repo_type)
    raise self._json(200, {})

  def _tag(self, method, body, token, repo_type, repo_id, revision):
    store = self.server.hub.store
    if method == "DELETE":
      store.delete_ref(repo_id, "tags", revision, repo_type=repo_type)
    else:
      store.create_ref(repo_id, "tags", json.loads(body or b"{}")["tag"], revision, repo_type=repo_type)
    raise self._json(200, {})

  def _resolve(self, method, body, token, repo_type, repo_id, revision, path):
    store = self.server.hub.store
    self._check_read(repo_type, repo_id, token)
    commit = store.resolve(repo_id, revision, repo_type=repo_type)
    entry = commit["files"].get(path)
    if entry is None:
      raise HubError(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": commit["id"]})
    blob = store.blob_path(entry["sha256"])
    actual = blob.stat().st_size  # differs from entry["size"] only after a tamper() that changed the length
    etag = f'"{store.etag(entry)}"'
    headers = {"Content-Type": "application/octet-stream", "ETag": etag, "X-Repo-Commit": commit["id"],
               "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=0, must-revalidate"}
    if store.is_lfs(entry):
      headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(entry["size"])})
    span = (0, actual)
    status = 200
    ranges = self.headers.get("Range")
    if ranges and method == "GET":
      match = re.fullmatch(r"bytes=(\d*)-(\d*)", ranges.strip())
      if not match or not (match.group(1) or match.group(2)):
        raise HubError(416, None, f"Unsupported range {ranges!r}", {"Content-Range": f"bytes */{actual}"})
      if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)) + 1, actual) if match.group(2) else actual
      else:
        start, end = max(actual - int(match.group(2)), 0), actual
      if start >= actual or start >= end:
        raise HubError(416, None, f"Range {ranges!r} not satisfiable", {"Content-Range": f"bytes */{actual}"})
      span, status = (start, end), 206
      headers["Content-Range"] = f"bytes {start}-{end - 1}/{actual}"
    if method == "HEAD":
      # the advertised size (from the commit), as the Hub would announce it
      raise _Answer(200, headers, file=blob, span=(0, entry["size"]))
    raise _Answer(status, headers, file=blob, span=span)


class _Server(ThreadingHTTPServer):
  """Threaded server that also closes its open keep-alive connections when it stops, so that a client's pooled
  connection can never reach a stopped server's handler (e.g. after a new server got the same port)."""

  daemon_threads = True
  block_on_close = False
  allow_reuse_address = True

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._conns: set[socket.socket] = set()
    self._conns_lock = threading.Lock()

  def process_request(self, request, client_address):
    with self._conns_lock:
      self._conns.add(request)
    super().process_request(request, client_address)

  def shutdown_request(self, request):
    with self._conns_lock:
      self._conns.discard(request)
    super().shutdown_request(request)

  def close_connections(self) -> None:
    with self._conns_lock:
      conns, self._conns = list(self._conns), set()
    for conn in conns:
      with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class HubServer(str):
  """The endpoint URL of a running server (a `str`: pass it as `endpoint=` or HF_ENDPOINT) plus test handles.

  Attributes:
    url: the endpoint, e.g. "http://127.0.0.1:40123" (same as `str(self)`).
    store: the `HubStore` (repos, commits, refs, `upload` for seeding without HTTP).
    root: the storage directory.
    requests: every request answered so far, as `Request(method, route, path, token)`.
    require_token: when True, any non-GET/HEAD request without `Authorization: Bearer ...` gets 401.
  """

  store: HubStore

  def __new__(cls, url: str, store: HubStore, *, page_size: int = 1000, require_token: bool = False):
    self = super().__new__(cls, url)
    self.store = store
    self.page_size = page_size
    self.require_token = require_token
    self._lock = threading.Lock()
    self._requests: list[Request] = []
    self._faults: dict[str, list[int]] = {}
    return self

  @property
  def url(self) -> str:
    return str(self)

  @property
  def root(self) -> pathlib.Path:
    return self.store.root

  # -- request accounting
  def _record(self, request: Request) -> None:
    with self._lock:
      self._requests.append(request)

  @property
  def requests(self) -> list[Request]:
    with self._lock:
      return list(self._requests)

  def count(self, route: str | None = None, method: str | None = None) -> int:
    """How many requests were answered, for one route name (e.g. "resolve", "info", "tree", "commit",
    "preupload", "create_repo", "whoami", "refs", "paths_info", "unknown") and/or method; all if None."""
    return sum(1 for r in self.requests if route in (None, r.route) and method in (None, r.method))

  def counts(self) -> Counter:
    """Requests per route name."""
    return Counter(r.route for r in self.requests)

  def reset_counts(self) -> None:
    with self._lock:
      self._requests.clear()

  # -- faults
  def fail(self, route: str, status: int = 503, times: int = 1) -> None:
    """The next `times` requests to `route` are answered with HTTP `status` (no X-Error-Code)."""
    with self._lock:
      self._faults.setdefault(route, []).extend([status] * times)

  def _take_fault(self, route: str) -> int | None:
    with self._lock:
      queue = self._faults.get(route)
      return queue.pop(0) if queue else None

  def tamper(self, repo_id: str, path: str, data: bytes | None = None, *, revision: str = "main",
             repo_type: str = "model") -> bytes:
    """See `HubStore.tamper`: corrupts stored bytes in place, ETag/sha256/size unchanged; returns the original."""
    return self.store.tamper(repo_id, path, data, revision=revision, repo_type=repo_type)

  def head(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> str:
    """The commit id `revision` points at."""
    return self.store.resolve(repo_id, revision, repo_type=repo_type)["id"]


@contextlib.contextmanager
def serve(root: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0, lfs_threshold: int | None = None,
          user: str = "tester", require_token: bool = False, gitattributes: bool = True,
          page_size: int = 1000, verbose: bool = False) -> Iterator[HubServer]:
  """Runs a Hub-compatible server storing repos under `root` in a daemon thread; yields its `HubServer`.

  Arguments:
    root: storage directory (created if missing; reopened as it is otherwise).
    port: 0 picks a free port. lfs_threshold, user, gitattributes: see `HubStore`.
    require_token: refuse writes without a bearer token (401), like the Hub. page_size: tree listing page length.
  Returns:
    a `HubServer`: the endpoint URL "http://127.0.0.1:PORT" as a str, with `count`, `tamper`, `fail`, `store`.
  """
  store = HubStore(root, user=user, lfs_threshold=lfs_threshold, gitattributes=gitattributes)
  httpd = _Server((host, port), _Handler)
  httpd.verbose = verbose
  httpd.hub = HubServer(f"http://{host}:{httpd.server_address[1]}", store, page_size=page_size,
                        require_token=require_token)
  thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                            name=f"test-hub-{httpd.server_address[1]}")
  thread.start()
  try:
    yield httpd.hub
  finally:
    httpd.shutdown()
    httpd.server_close()
    httpd.close_connections()
    thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description="Hub-compatible HTTP server storing repos on disk (for tests).")
  parser.add_argument("--root", required=True, type=pathlib.Path, help="storage directory")
  parser.add_argument("--host", default="127.0.0.1")
  parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
  parser.add_argument("--lfs-threshold", type=int, default=None, help="serve files >= N bytes as LFS files")
  parser.add_argument("--require-token", action="store_true", help="refuse writes without a bearer token")
  parser.add_argument("--verbose", action="store_true", help="log every request")
  args = parser.parse_args(argv)
  with serve(args.root, host=args.host, port=args.port, lfs_threshold=args.lfs_threshold,
             require_token=args.require_token, verbose=args.verbose) as hub:
    print(f"Hub-compatible server at {hub} (storage {args.root}); use HF_ENDPOINT={hub}. Ctrl-C stops it.",
          flush=True)
    try:
      threading.Event().wait()
    except KeyboardInterrupt:
      pass


if __name__ == "__main__":
  main()
