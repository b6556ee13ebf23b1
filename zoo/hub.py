"""Where checkpoints come from and go to: the repo's `checkpoints/`, the Hugging Face cache, the Hub.

`resolve(name)` finds a verified checkpoint directory in this order:
  1. the embedded copy `checkpoints/NAME/` (works offline on a fresh clone; `ZOO_CHECKPOINTS` overrides the folder),
  2. the Hugging Face cache (no network call),
  3. the Hub (`hf_hub_download` of `manifest.json`, then of exactly the files it lists: no repo listing, so
     it also works against mirrors and stays cheap on rate limits).
The registry pins the sha256 of `manifest.json`; the manifest pins every other file. Every source is checked
alike, and a file that fails its check is removed from the cache before `CheckpointCorruptError` is raised.

Every failure is a typed `zoo.errors.ZooError` (transport errors, 401/403 as `HubAuthError`, malformed repo ids
as `InvalidSourceError`); no network fails within seconds, and a whole load or push ends within
`ZOO_HUB_TIMEOUT` seconds (default 300). A cache snapshot may hold files its manifest does not list
(`.gitattributes`): they are ignored outside `state/`.

Sources: a registered name (`"massnet-sir"`), `"hf://ORG/REPO[@REVISION]"`, or `"local-dir:PATH"` /
an existing directory. `HF_ENDPOINT`, `HF_TOKEN`, `HF_HOME`/`HF_HUB_CACHE` and `HF_HUB_OFFLINE` are read
at call time.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterator, Mapping, TypeVar

from flax import nnx

from zoo import cache, checkpoint, errors, pins, registry

HF_PREFIX = "hf://"
LOCAL_PREFIX = "local-dir:"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,95}")  # a registered model name (ship writes checkpoints/NAME)
T = TypeVar("T")


def hub_timeout() -> float:
  """Overall deadline in seconds of one load's downloads or one push: `$ZOO_HUB_TIMEOUT`, default 300."""
  return float(os.environ.get("ZOO_HUB_TIMEOUT") or 300)


def _etag_timeout() -> float:
  """Per-request metadata timeout: huggingface_hub's own `HF_HUB_ETAG_TIMEOUT`, default 5 s here."""
  return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 5)


def _with_deadline(fn: Callable[[], T], what: str) -> T:
  """Runs `fn` in a daemon thread and waits at most `hub_timeout()` for it: a stalled or trickling server
  cannot hang the caller (the abandoned thread ends with the process; HF's partial files are its own)."""
  timeout = hub_timeout()
  out: dict[str, Any] = {}
  done = threading.Event()

  def target() -> None:
    try:
      out["value"] = fn()
    except BaseException as e:  # pylint: disable=broad-except  # handed to the caller
      out["error"] = e
    finally:
      done.set()

  threading.Thread(target=target, daemon=True, name=f"zoo-hub-{what[:40]}").start()
  if not done.wait(timeout):
    raise errors.HubUnavailableError(
        f"{what} did not finish within {timeout:.0f} s (ZOO_HUB_TIMEOUT): the Hub is stalled or too slow. Retry, "
        f"raise ZOO_HUB_TIMEOUT, or point HF_ENDPOINT at a mirror.")
  if "error" in out:
    raise out["error"]
  return out["value"]


def _probe(where: str) -> None:
  """No network at all fails here within seconds (a TCP connect to the endpoint), instead of after
  huggingface_hub's retries. Skipped behind a proxy, where a direct connect says nothing."""
  if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
    return
  url = urllib.parse.urlsplit(_endpoint() or "https://huggingface.co")
  port = url.port or (443 if url.scheme == "https" else 80)
  try:
    with socket.create_connection((url.hostname, port), timeout=min(_etag_timeout(), 4.0)):
      pass
  except OSError as e:
    raise errors.HubUnavailableError(
        f"Cannot reach {where} ({url.hostname}:{port}: {e.__class__.__name__}: {e}): no network, or the endpoint "
        f"is down. Connect and retry, point HF_ENDPOINT at a mirror, or use the cache with HF_HUB_OFFLINE=1.") from e


def validate_repo_id(repo_id: Any, what: str = "repo id") -> str:
  """`repo_id` if it is a Hub repo id `ORG/NAME`, else `InvalidSourceError` saying what is accepted."""
  from huggingface_hub.utils import HFValidationError, validate_repo_id as hf_validate  # pylint: disable=import-outside-toplevel

  ok = isinstance(repo_id, str) and repo_id.count("/") == 1 and all(repo_id.split("/"))
  if ok:
    try:
      hf_validate(repo_id)
    except HFValidationError:
      ok = False
  if not ok or ".." in repo_id:
    raise errors.InvalidSourceError(
        f"{what} {repo_id!r} is not a Hub repo id: write ORG/NAME (letters, digits, '-', '_', '.'; no spaces, no "
        f"'..').")
  return repo_id


checkpoints_dir = cache.checkpoints_dir


def _endpoint() -> str | None:
  return os.environ.get("HF_ENDPOINT") or None


def _cache_dir() -> str | None:
  if os.environ.get("HF_HUB_CACHE"):
    return os.environ["HF_HUB_CACHE"]
  if os.environ.get("HF_HOME"):
    return str(pathlib.Path(os.environ["HF_HOME"]) / "hub")
  return None


def _offline() -> bool:
  return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def parse_hf_uri(uri: str) -> tuple[str, str]:
  """`"hf://ORG/REPO[@REVISION]"` -> (repo_id, revision)."""
  body = uri[len(HF_PREFIX):]
  repo_id, _, revision = body.partition("@")
  try:
    validate_repo_id(repo_id)
  except errors.InvalidSourceError as e:
    raise errors.InvalidSourceError(
        f"{uri!r} is not a Hub reference; write 'hf://ORG/REPO' or 'hf://ORG/REPO@REVISION'.") from e
  return repo_id, revision or "main"


def _remove_cached(path: pathlib.Path) -> None:
  """Removes a cached snapshot file and the blob it points to (so a bad download is not reused)."""
  blob = pathlib.Path(os.path.realpath(path))
  for p in (path, blob):
    with contextlib.suppress(FileNotFoundError):
      p.unlink()


def _transport_errors() -> tuple[type[BaseException], ...]:
  """The HTTP client's own errors (httpx2 under huggingface_hub 2, httpx under 1; requests for old ones): not
  OSError subclasses, so they are named here."""
  out: list[type[BaseException]] = []
  for module in ("httpx2", "httpx"):
    with contextlib.suppress(ImportError):
      mod = __import__(module)
      out += [getattr(mod, n) for n in ("HTTPError", "InvalidURL", "StreamError") if hasattr(mod, n)]
  with contextlib.suppress(ImportError):
    import requests  # pylint: disable=import-outside-toplevel
    out.append(requests.RequestException)
  return tuple(out)


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str) -> Iterator[None]:
  """Maps huggingface_hub's (and httpx's) exceptions to the zoo's, each saying what to do."""
  from huggingface_hub import errors as hf_errors  # pylint: disable=import-outside-toplevel

  where = f"{repo_id}@{revision} on {_endpoint() or 'the Hugging Face Hub'}"
  auth = ("The Hub refused {where} ({status}): the token is missing, invalid or lacks access. Set HF_TOKEN to a "
          "token with {need} access to the repo.")
  try:
    yield
  except errors.ZooError:
    raise
  # GatedRepoError subclasses RepositoryNotFoundError, LocalEntryNotFoundError EntryNotFoundError: matched first.
  except hf_errors.GatedRepoError as e:
    raise errors.HubAuthError(auth.format(where=where, status="gated repo", need="read")) from e
  except hf_errors.RepositoryNotFoundError as e:
    raise errors.CheckpointNotFoundError(
        f"No Hub repo {where} (or it is private: set HF_TOKEN). Check the repo id.") from e
  except hf_errors.RevisionNotFoundError as e:
    raise errors.CheckpointNotFoundError(f"Revision {revision!r} not found in {repo_id}.") from e
  except (hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError) as e:
    raise errors.HubUnavailableError(
        f"{where} is not in the Hugging Face cache ({_cache_dir() or '~/.cache/huggingface/hub'}) and the Hub "
        f"cannot be reached (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!r}, or no network). Connect and "
        f"retry, point HF_ENDPOINT at a mirror, or copy the checkpoint folder here and load it with "
        f"'local-dir:PATH'.") from e
  except (hf_errors.EntryNotFoundError, hf_errors.RemoteEntryNotFoundError) as e:
    raise errors.CheckpointNotFoundError(
        f"{where} is not a zoo checkpoint: a listed file is missing ({e}). Push it with zoo.push_to_hub.") from e
  except hf_errors.HFValidationError as e:
    raise errors.InvalidSourceError(f"{repo_id!r}@{revision!r} is not a valid Hub reference ({e}).") from e
  except hf_errors.HfHubHTTPError as e:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403):
      raise errors.HubAuthError(auth.format(where=where, status=status, need="read (write for a push)")) from e
    raise errors.HubUnavailableError(
        f"The Hub answered {status} for {where}: {str(e)[:300]}. Retry later, or check HF_ENDPOINT.") from e
  except (OSError, *_transport_errors()) as e:
    raise errors.HubUnavailableError(
        f"Could not reach {where}: {e.__class__.__name__}: {str(e)[:300]}. Check the network or HF_ENDPOINT, or "
        f"use the cache with HF_HUB_OFFLINE=1.") from e
  except ValueError as e:  # huggingface_hub's own argument checks (e.g. a malformed revision)
    raise errors.InvalidSourceError(f"{where}: {e}") from e


def download(repo_id: str, revision: str = "main", expected_sha256: str | None = None,
             local_files_only: bool = False, *, cache_dir: str | os.PathLike | None = None,
             token: str | bool | None = None, force_download: bool = False) -> pathlib.Path:
  """Fetches the checkpoint at `repo_id@revision` into the HF cache and returns its verified snapshot dir.

  Downloads `manifest.json`, checks it against `expected_sha256` (else its self-checksum), then downloads
  exactly the files it lists at the manifest's commit and checks each one (huggingface_hub shows its own progress
  bar per file; `HF_HUB_DISABLE_PROGRESS_BARS=1` hides them). A corrupt file is deleted from the cache, then
  `CheckpointCorruptError` is raised. `local_files_only` (or HF_HUB_OFFLINE=1) makes no network call;
  `cache_dir` replaces the HF cache folder, `token` the HF_TOKEN, `force_download` re-fetches cached files.
  Every failure is a `ZooError`; the whole download ends within `hub_timeout()` (ZOO_HUB_TIMEOUT).
  """
  validate_repo_id(repo_id)
  opts = dict(cache_dir=cache_dir, token=token, force_download=force_download)
  local = local_files_only or _offline()
  if local:
    return _download(repo_id, revision, expected_sha256, True, **opts)
  where = f"{repo_id}@{revision} on {_endpoint() or 'the Hugging Face Hub'}"
  _probe(where)
  return _with_deadline(lambda: _download(repo_id, revision, expected_sha256, False, **opts), f"download of {where}")


def _download(repo_id: str, revision: str, expected_sha256: str | None, local: bool, *,
              cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
              force_download: bool = False) -> pathlib.Path:
  from huggingface_hub import hf_hub_download  # pylint: disable=import-outside-toplevel

  common = dict(cache_dir=str(cache_dir) if cache_dir is not None else _cache_dir(), endpoint=_endpoint(),
                local_files_only=local, token=token if token is not None else (os.environ.get("HF_TOKEN") or None),
                library_name="nnx-zoo", etag_timeout=_etag_timeout(), force_download=force_download and not local)
  with _hub_errors(repo_id, revision):
    manifest_path = pathlib.Path(hf_hub_download(repo_id, checkpoint.MANIFEST, revision=revision, **common))
  snapshot = manifest_path.parent
  try:
    manifest = checkpoint.read_manifest(snapshot, expected_sha256)
  except errors.CheckpointCorruptError as e:
    _remove_cached(manifest_path)
    raise errors.CheckpointCorruptError(f"{e} (the downloaded manifest was removed from the cache)") from e
  commit = snapshot.name  # the cache's snapshot folder is the resolved commit: fetch the rest from it
  for rel, want in manifest["files"].items():
    with _hub_errors(repo_id, revision):
      path = pathlib.Path(hf_hub_download(repo_id, rel, revision=commit, **common))
    got = checkpoint.sha256_file(path)
    if got != want:
      _remove_cached(path)
      raise errors.CheckpointCorruptError(
          f"{repo_id}@{commit}: {rel} has sha256 {got}, its manifest says {want}. The download is corrupt (it was "
          f"removed from the cache); retry, and report the repo if it persists.")
  checkpoint.verify_files(snapshot, manifest)  # a snapshot: files the manifest does not list are ignored
  return snapshot


SOURCES_HELP = """\
Sources (the first argument):

    NAME                 a registered model (`zoo list`), e.g. "massnet-sir": the embedded copy in checkpoints/NAME
                         (in a clone of the repository), else the HF cache, else the Hub repo its pin names; every
                         file is checked against the pinned sha256.
    hf://ORG/REPO        any zoo checkpoint on the Hub at `main`, e.g. "hf://me/my-massnet".
    hf://ORG/REPO@REV    the same at a branch, tag or commit, e.g. "hf://nnx-zoo/massnet-sir@v1".
    local-dir:PATH       a checkpoint folder on disk (written by zoo.checkpoint.save or a training run's export),
                         e.g. "local-dir:runs/massnet-sir/export"; an existing directory path containing a "/" is
                         accepted without the prefix.

Hub options (keyword-only; defaults follow huggingface_hub and its environment variables):

    revision="v1"            branch, tag or commit to fetch. For NAME: from its pretrained repo, checked by the
                             manifest's self-checksum instead of the pin unless it is the pinned revision. For
                             hf:// it is the same as @REV (both at once must agree).
    cache_dir="/data/hf"     the Hugging Face cache folder (default HF_HUB_CACHE, else HF_HOME/hub).
    token="hf_..."           the Hub token (default HF_TOKEN, then the `hf auth login` token).
    force_download=True      download again although the cache holds the files (NAME skips its embedded copy).
    local_files_only=True    never touch the network: the embedded copy or the HF cache only (as HF_HUB_OFFLINE=1).
"""


def _no_hub_options(source: str, revision: str | None, force_download: bool) -> None:
  if revision is not None or force_download:
    raise errors.InvalidSourceError(
        f"{source!r} is a local directory: revision= and force_download= apply to Hub sources only "
        f"('hf://ORG/REPO@REV' or a registered name).")


def resolve(source: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
            token: str | bool | None = None, force_download: bool = False,
            local_files_only: bool = False) -> tuple[pathlib.Path, str | None, str]:
  """A verified checkpoint directory for `source`; returns (directory, pinned manifest sha256, where).
  The source forms and options are in `SOURCES_HELP` (shown by `help(zoo.load)`)."""
  if not isinstance(source, str) or not source or "\0" in source:
    raise errors.InvalidSourceError(f"{source!r} is not a source: give a registered name (zoo list), "
                                    f"'hf://ORG/REPO[@REVISION]', or 'local-dir:PATH'.")
  if revision is not None and (not isinstance(revision, str) or not revision.strip()):
    raise errors.InvalidSourceError(f"revision={revision!r}: give a branch, tag or commit sha as a string.")
  hub_opts = dict(cache_dir=cache_dir, token=token, force_download=force_download)
  if source.startswith(LOCAL_PREFIX) or (os.sep in source and pathlib.Path(source).is_dir()):
    _no_hub_options(source, revision, force_download)
    path = pathlib.Path(source[len(LOCAL_PREFIX):] if source.startswith(LOCAL_PREFIX) else source)
    if not path.is_dir():
      raise errors.CheckpointNotFoundError(f"{path} is not a directory; 'local-dir:PATH' takes a checkpoint folder.")
    if not os.path.lexists(path / checkpoint.MANIFEST):
      raise errors.CheckpointNotFoundError(f"{path} holds no zoo checkpoint (no {checkpoint.MANIFEST}).")
    return path, None, f"local directory {path}"
  if source.startswith(HF_PREFIX):
    repo_id, rev = parse_hf_uri(source)
    if revision is not None:
      if "@" in source and rev != revision:
        raise errors.InvalidSourceError(f"{source!r} names revision {rev!r} but revision={revision!r}: give one.")
      rev = revision
    return download(repo_id, rev, local_files_only=local_files_only, **hub_opts), None, f"hf://{repo_id}@{rev}"
  if "://" in source or source.startswith("hf:"):
    raise errors.InvalidSourceError(f"{source!r}: unknown source prefix. Accepted: a registered name (zoo list), "
                                    f"'hf://ORG/REPO[@REVISION]', or 'local-dir:PATH'.")
  spec = registry.get_spec(source)
  pin = spec.pretrained.sha256 if spec.pretrained else None
  embedded = checkpoints_dir() / spec.name
  pinned_revision = spec.pretrained is None or revision in (None, spec.pretrained.revision)
  if pinned_revision and not force_download:
    checkpoint.recover(embedded)
    if (embedded / checkpoint.MANIFEST).is_file():
      return embedded, pin, f"embedded {embedded}"
  if spec.pretrained is None:
    raise errors.CheckpointNotFoundError(
        f"{spec.name} has no pretrained weights yet. Use zoo.create({spec.name!r}) for a randomly initialised "
        f"model, or train one: python -m train --config configs/{spec.family.name}.py:VARIANT --workdir DIR.")
  repo, rev = spec.pretrained.repo_id, revision or spec.pretrained.revision
  if not pinned_revision:
    pin = None  # not the pinned revision: checked by its manifest's self-checksum only
  if not force_download:
    try:
      return download(repo, rev, pin, local_files_only=True, **hub_opts), pin, f"HF cache ({repo}@{rev})"
    except errors.HubUnavailableError as e:
      if _offline() or local_files_only:
        raise errors.HubUnavailableError(
            f"{e} {spec.name} is not embedded here ({embedded} does not exist: a pip install carries no checkpoints; "
            f"they ship in the repository's checkpoints/ folder and on the Hub as hf://{repo}). Offline, set "
            f"ZOO_CHECKPOINTS to a clone's checkpoints/ folder, or fetch it once online (`zoo download {repo}`)."
        ) from e
  return download(repo, rev, pin, **hub_opts), pin, f"hf://{repo}@{rev}"


def load(source: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
         token: str | bool | None = None, force_download: bool = False, local_files_only: bool = False,
         **model_overrides: Any) -> nnx.Module:
  """The pretrained model for `source`, verified (sha256 of every file) and in eval mode.

  Examples:

      zoo.load("massnet-sir")                                  # a registered name
      zoo.load("hf://me/my-massnet")                           # a zoo checkpoint on the Hub, at main
      zoo.load("hf://nnx-zoo/massnet-sir@v1")                  # ... at a branch, tag or commit
      zoo.load("hf://me/my-massnet", revision="v1", cache_dir="/data/hf", token="hf_...")
      zoo.load("massnet-sir", local_files_only=True)           # never touches the network
      zoo.load("local-dir:runs/massnet-sir/export")            # a checkpoint folder on disk

  {SOURCES}

  Other keyword arguments override model arguments that do not change the weights' shapes (e.g. a number of
  integration steps). Its provenance (`zoo.provenance(model)`) records the name, kwargs, where it came from and
  the manifest. Every failure is a `zoo.errors.ZooError` saying what to do.
  """
  cache.enable_compilation_cache()
  directory, pin, where = resolve(source, revision=revision, cache_dir=cache_dir, token=token,
                                  force_download=force_download, local_files_only=local_files_only)
  model, manifest = checkpoint.restore(directory, expected_sha256=pin, model_overrides=model_overrides)
  return registry.set_provenance(model, registry.Provenance.make(
      manifest["name"], {**manifest["model_kwargs"], **model_overrides}, where, manifest))


load.__doc__ = load.__doc__.replace("{SOURCES}", SOURCES_HELP.replace("\n", "\n  ").rstrip())


def create(name: str, seed: int = 0, **overrides: Any) -> nnx.Module:
  """A randomly initialised model of the registered variant `name` (weights from `seed`).

  Built operation by operation (tens of small XLA programs, shared by every model and kept in the persistent
  compilation cache, `zoo.cache`), or with `ZOO_COMPILED_INIT=1` under ONE compiled initialisation
  (`zoo.compiled_init`: one program per variant and keyword arguments, bit for bit the same weights). On CPU the
  eager build is the faster, cold and warm: benchmarks/results/first_calls.md. The state is memoised in the
  initial-state cache (`zoo.init_cache`, off with ZOO_INIT_CACHE=0): a second create of the same name, kwargs and
  seed with the same code reads it back into an abstract module, bit for bit the same."""
  cache.enable_compilation_cache()
  spec = registry.get_spec(name)
  from zoo import init_cache  # pylint: disable=import-outside-toplevel

  model = init_cache.build(spec, seed, overrides)
  return registry.set_provenance(model, registry.Provenance.make(
      name, {**spec.kwargs, **overrides}, f"zoo.create({name!r}, seed={seed})"))


def push_to_hub(model_or_dir: nnx.Module | str | os.PathLike, repo_id: str, *, name: str | None = None,
                revision: str | None = None, private: bool = False, token: str | None = None,
                commit_message: str | None = None) -> str:
  """Uploads a checkpoint (a module, or a checkpoint directory) to `repo_id` in one commit; returns its URL.

  A module is saved first (with its manifest and card); a directory is verified before anything is sent, so
  a corrupt checkpoint is never published. The repo is created if needed (`exist_ok=True`).
  """
  from huggingface_hub import HfApi  # pylint: disable=import-outside-toplevel

  validate_repo_id(repo_id)
  with contextlib.ExitStack() as stack:
    if isinstance(model_or_dir, nnx.Module):
      origin = registry.provenance(model_or_dir)
      name = name or (origin.name if origin else None)
      if name is None:
        raise ValueError("push_to_hub needs name= for a module not made by zoo.create / zoo.load.")
      from zoo import cards  # pylint: disable=import-outside-toplevel

      manifest = origin.manifest if origin else None
      folder = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory())) / name
      checkpoint.save(model_or_dir, folder, name=name, model_kwargs=origin.kwargs if origin else None,
                      config=(manifest or {}).get("config"), metrics=(manifest or {}).get("metrics"),
                      card_sections=dict(cards.ordered_sections(manifest or {})), card_repo_id=repo_id)
    else:
      folder = pathlib.Path(model_or_dir)
    manifest = checkpoint.read_manifest(folder)
    checkpoint.verify_files(folder, manifest)
    api = HfApi(endpoint=_endpoint(), token=token or os.environ.get("HF_TOKEN") or None,
                library_name="nnx-zoo")
    where = f"{repo_id}@{revision or 'main'} on {_endpoint() or 'the Hugging Face Hub'}"
    _probe(where)

    def upload():
      with _hub_errors(repo_id, revision or "main"):
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, revision=revision,
            commit_message=commit_message or f"Upload {manifest['name']} (nnx-zoo)")
    info = _with_deadline(upload, f"push to {where}")
  return str(info.commit_url)


def shipped_records(exclude: str | None = None) -> dict[str, dict[str, Any]]:
  """{name: {"metrics": ..., "checks": [...]}} of every embedded checkpoint, read from its manifest: what family
  card sections get as `siblings` (model code never reads sibling checkpoints itself)."""
  out = {}
  root = checkpoints_dir()
  for spec in registry.specs():
    path = root / spec.name / checkpoint.MANIFEST
    if spec.name != exclude and path.is_file():
      try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
          continue
      except (ValueError, UnicodeDecodeError, RecursionError):
        continue  # a broken sibling is reported when it is loaded, not here
      out[spec.name] = {"metrics": manifest.get("metrics") or {}, "checks": manifest.get("checks") or []}
  return out


def ship(export_dir: str | os.PathLike, sections: Mapping[str, str] | None = None, *,
         replace: bool = False) -> tuple[pathlib.Path, str, dict[str, Any] | None]:
  """Embeds a verified exported checkpoint as `checkpoints/NAME` (atomically) and pins it in
  `checkpoints/pins.json`; re-renders its card from the registry (plus `sections`, {title: markdown}).

  A model that already ships is replaced only with `replace=True` (else `ShipConflictError`, naming the metrics
  it would replace); an export whose recorded checks failed is refused. Returns (path, manifest sha256, the
  replaced model's metrics or None)."""
  export_dir = pathlib.Path(export_dir)
  if not export_dir.is_dir():
    raise errors.CheckpointNotFoundError(f"{export_dir} is not a directory: give the run's export folder "
                                         f"(WORKDIR/export).")
  manifest = checkpoint.read_manifest(export_dir)
  name = manifest["name"]
  if not _NAME.fullmatch(name):  # before any write: the name becomes a folder under checkpoints/
    raise errors.ManifestError("name", f"{export_dir}: manifest field 'name' is {name!r}, not a model name "
                                       f"(lowercase letters, digits, '.', '_', '-'); nothing was written.")
  spec = registry.get_spec(name)
  root = checkpoints_dir().absolute()
  target = root / spec.name
  if target.parent != root or not _NAME.fullmatch(spec.name):
    raise errors.ManifestError("name", f"{spec.name!r} would ship outside {root}; nothing was written.")
  checkpoint.verify_files(export_dir, manifest)
  failed = [c["name"] for c in manifest.get("checks") or [] if not c.get("passed")]
  if failed:
    raise errors.ShipConflictError(f"{export_dir}: its recorded checks failed ({'; '.join(failed)}); a model "
                                   f"whose guarantee does not hold is not shipped.")
  if manifest.get("shippable") is False:
    raise errors.ShipConflictError(f"{export_dir} is marked not shippable ({manifest.get('shippable_reason')}).")
  target.parent.mkdir(parents=True, exist_ok=True)
  with checkpoint.locked(target):  # one ship of a model at a time; readers wait for the swap
    checkpoint.recover(target)
    replaced = None
    if (target / checkpoint.MANIFEST).is_file():
      replaced = json.loads((target / checkpoint.MANIFEST).read_text()).get("metrics") or {}
      if not replace:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in sorted(replaced.items()))
        raise errors.ShipConflictError(
            f"{spec.name} already ships (metrics: {shown}). Ship again with replace=True (zoo ship --replace) to "
            f"replace it with {export_dir} (metrics: {manifest.get('metrics')}).")
    checkpoint.clean_stale_tmp(target)
    tmp = checkpoint.make_tmp(target)
    try:
      shutil.rmtree(tmp)
      shutil.copytree(export_dir, tmp, symlinks=True)
      checkpoint.refresh_card(tmp, sections)  # the card follows the registry's current text
      checkpoint.replace_dir(tmp, target)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    sha = checkpoint.sha256_file(target / checkpoint.MANIFEST)
    previous = spec.pretrained
    pins.write(spec.name, sha, repo_id=previous.repo_id if previous else None,
               revision=previous.revision if previous else "main")
  return target, sha, replaced
