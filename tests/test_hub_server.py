"""The local Hub-compatible server (tests/hub_server.py) against the unmodified huggingface_hub client over HTTP.

Nothing of huggingface_hub is mocked and nothing of zoo is used. In-process calls pass `endpoint=` and
`cache_dir=` explicitly (huggingface_hub reads HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE once, at import);
the subprocess tests set those variables before the import instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
  EntryNotFoundError,
  HfHubHTTPError,
  RemoteEntryNotFoundError,
  RepositoryNotFoundError,
  RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from tests.hub_server import HubServer, serve

pytestmark = pytest.mark.timeout(60)

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPO = "nnx-zoo/demo"
TOKEN = "hf_test_token"


def _folder(path: pathlib.Path) -> dict[str, bytes]:
  """Writes a small model folder (nested dirs, a 3 MB binary) and returns {path_in_repo: bytes}."""
  files = {
    "config.json": json.dumps({"hidden": 8, "widths": [4, 4]}).encode(),
    "README.md": b"---\nlibrary_name: nnx-zoo\ntags:\n- flax\n- nnx\n---\n# demo\n",
    "state/manifest.json": b'{"format": 1}',
    "state/arrays/params.bin": hashlib.sha256(b"seed").digest() * (3_000_000 // 32),
    "state/arrays/nested/deep/tiny.txt": b"x",
  }
  for name, data in files.items():
    (path / name).parent.mkdir(parents=True, exist_ok=True)
    (path / name).write_bytes(data)
  return files


def _sha256(path: str | pathlib.Path) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
  """One server for the module with REPO uploaded by `upload_folder` (one commit)."""
  base = tmp_path_factory.mktemp("hubmod")
  folder = base / "upload"
  files = _folder(folder)
  with serve(base / "hub") as server:
    api = HfApi(endpoint=server, token=TOKEN)
    api.create_repo(REPO)
    server.reset_counts()
    info = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="Upload demo")
    server.upload_counts = server.counts()
    server.files, server.commit = files, info.oid
    yield server


@pytest.fixture()
def api(hub):
  return HfApi(endpoint=hub, token=TOKEN)


def test_serve_yields_the_endpoint_url(hub):
  assert isinstance(hub, HubServer) and isinstance(hub, str)
  assert hub.url == str(hub) and hub.url.startswith("http://127.0.0.1:")
  assert int(hub.url.rsplit(":", 1)[1]) > 0


def test_whoami_accepts_any_token(api, hub):
  assert api.whoami(token="anything")["name"] == "tester"
  with pytest.raises(urllib.error.HTTPError) as e:  # no Authorization header at all
    urllib.request.urlopen(f"{hub}/api/whoami-v2", timeout=10)
  assert e.value.code == 401
  assert hub.requests[-1].token is None


def test_create_repo_and_exist_ok(api, hub):
  url = api.create_repo("nnx-zoo/fresh")
  assert url.repo_id == "nnx-zoo/fresh" and url.endpoint == hub.url
  with pytest.raises(HfHubHTTPError) as e:
    api.create_repo("nnx-zoo/fresh")
  assert e.value.response.status_code == 409
  again = api.create_repo("nnx-zoo/fresh", exist_ok=True)
  assert again.repo_id == "nnx-zoo/fresh"
  assert api.repo_exists("nnx-zoo/fresh") and not api.repo_exists("nnx-zoo/never")
  # like the Hub, a new repo holds one "initial commit" with .gitattributes
  assert [f.path for f in api.list_repo_tree("nnx-zoo/fresh")] == [".gitattributes"]
  assert [c.title for c in api.list_repo_commits("nnx-zoo/fresh")] == ["initial commit"]


def test_upload_folder_is_one_commit_with_all_files(api, hub):
  counts = hub.upload_counts
  assert counts["commit"] == 1 and counts["preupload"] == 1, counts
  commits = api.list_repo_commits(REPO)
  assert [c.title for c in commits] == ["Upload demo", "initial commit"]
  assert commits[0].commit_id == hub.commit == hub.head(REPO)
  assert len(hub.commit) == 40 and int(hub.commit, 16) >= 0


def test_model_info_siblings_and_card(api, hub):
  info = api.model_info(REPO, files_metadata=True)
  assert info.id == REPO and info.sha == hub.commit
  sizes = {s.rfilename: s.size for s in info.siblings}
  assert sizes == {".gitattributes": sizes[".gitattributes"], **{p: len(d) for p, d in hub.files.items()}}
  assert all(s.lfs is None and len(s.blob_id) == 40 for s in info.siblings)  # regular git blobs
  assert info.card_data["library_name"] == "nnx-zoo" and "nnx" in info.tags
  assert api.model_info(REPO, revision=hub.commit).sha == hub.commit


def test_hf_hub_download_into_empty_cache_is_byte_identical(hub, tmp_path):
  for name, data in hub.files.items():
    path = hf_hub_download(REPO, name, endpoint=hub, cache_dir=tmp_path)
    assert pathlib.Path(path).read_bytes() == data
    assert f"snapshots/{hub.commit}/{name}" in path
    # the cache blob is named by the ETag: the git blob sha1 for a regular file
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert os.path.realpath(path).endswith(f"blobs/{git_sha1}")
  # pinned by commit id and cached: no request at all
  before = hub.count()
  hf_hub_download(REPO, "config.json", revision=hub.commit, endpoint=hub, cache_dir=tmp_path)
  assert hub.count() == before


def test_snapshot_download_with_allow_patterns(hub, tmp_path):
  hub.reset_counts()
  snap = pathlib.Path(snapshot_download(REPO, endpoint=hub, cache_dir=tmp_path, allow_patterns=["state/**"]))
  got = {str(p.relative_to(snap)): p.read_bytes() for p in snap.rglob("*") if p.is_file()}
  assert got == {p: d for p, d in hub.files.items() if p.startswith("state/")}
  assert snap.name == hub.commit
  assert hub.count("info") == 1 and hub.count("tree") == 1 and hub.count("resolve", "GET") == len(got)
  full = pathlib.Path(snapshot_download(REPO, endpoint=hub, cache_dir=tmp_path / "full"))
  assert {str(p.relative_to(full)) for p in full.rglob("*") if p.is_file()} == {".gitattributes", *hub.files}


def test_list_repo_tree(api, hub):
  top = {(type(e).__name__, e.path) for e in api.list_repo_tree(REPO)}
  assert top == {("RepoFile", ".gitattributes"), ("RepoFile", "README.md"), ("RepoFile", "config.json"),
                 ("RepoFolder", "state")}
  nested = list(api.list_repo_tree(REPO, path_in_repo="state/arrays", recursive=True))
  files = {e.path: e.size for e in nested if isinstance(e, RepoFile)}
  assert files == {p: len(d) for p, d in hub.files.items() if p.startswith("state/arrays/")}
  assert {e.path for e in nested if isinstance(e, RepoFolder)} == {"state/arrays/nested",
                                                                     "state/arrays/nested/deep"}
  expanded = list(api.list_repo_tree(REPO, path_in_repo="state", expand=True))
  assert all(e.last_commit.oid == hub.commit for e in expanded)
  assert api.list_repo_files(REPO) == sorted([".gitattributes", *hub.files])
  infos = api.get_paths_info(REPO, ["config.json", "state", "nope"])
  assert [(type(i).__name__, i.path) for i in infos] == [("RepoFile", "config.json"), ("RepoFolder", "state")]


def test_tree_pagination_follows_link_header(tmp_path):
  with serve(tmp_path / "hub", page_size=3) as hub:
    hub.store.upload("org/many", {f"f{i:02d}.txt": b"%d" % i for i in range(10)})
    api = HfApi(endpoint=hub)
    assert len(list(api.list_repo_tree("org/many"))) == 11  # + .gitattributes
    assert hub.count("tree") == 4


def test_revision_pinning(api, hub, tmp_path):
  repo = "nnx-zoo/pinned"
  api.create_repo(repo)
  old = api.upload_file(path_or_fileobj=b"v1", path_in_repo="weights.bin", repo_id=repo).oid
  new = api.upload_file(path_or_fileobj=b"v2 longer", path_in_repo="weights.bin", repo_id=repo).oid
  assert old != new and api.model_info(repo).sha == new
  assert api.model_info(repo, revision=old).sha == old
  assert pathlib.Path(hf_hub_download(repo, "weights.bin", revision=old, endpoint=hub,
                                      cache_dir=tmp_path)).read_bytes() == b"v1"
  assert pathlib.Path(hf_hub_download(repo, "weights.bin", endpoint=hub, cache_dir=tmp_path)).read_bytes() == b"v2 longer"
  snap = snapshot_download(repo, revision=old, endpoint=hub, cache_dir=tmp_path / "s")
  assert (pathlib.Path(snap) / "weights.bin").read_bytes() == b"v1"
  # tags and branches are revisions too; an old commit stays addressable after main moves on
  api.create_tag(repo, tag="v1.0", revision=old)
  api.create_branch(repo, branch="dev", revision=old)
  refs = api.list_repo_refs(repo)
  assert {(r.name, r.target_commit) for r in refs.tags} == {("v1.0", old)}
  assert {(r.name, r.target_commit) for r in refs.branches} == {("main", new), ("dev", old)}
  assert pathlib.Path(hf_hub_download(repo, "weights.bin", revision="v1.0", endpoint=hub,
                                      cache_dir=tmp_path / "t")).read_bytes() == b"v1"
  dev = api.upload_file(path_or_fileobj=b"dev", path_in_repo="dev.txt", repo_id=repo, revision="dev").oid
  assert api.model_info(repo, revision="dev").sha == dev and api.model_info(repo).sha == new
  # a stale parent_commit is refused, like on the Hub
  with pytest.raises(HfHubHTTPError) as e:
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo, parent_commit=old)
  assert e.value.response.status_code == 412
  # unchanged content: the client skips the commit (preupload reports the remote oid)
  assert api.upload_file(path_or_fileobj=b"v2 longer", path_in_repo="weights.bin", repo_id=repo).oid == new
  api.delete_file("weights.bin", repo_id=repo)
  assert "weights.bin" not in api.list_repo_files(repo)
  assert "weights.bin" in api.list_repo_files(repo, revision=new)


def test_not_found_errors_map_to_client_classes(api, hub, tmp_path):
  with pytest.raises(RepositoryNotFoundError):
    api.model_info("nnx-zoo/missing")
  with pytest.raises(RepositoryNotFoundError):
    hf_hub_download("nnx-zoo/missing", "config.json", endpoint=hub, cache_dir=tmp_path)
  with pytest.raises(RepositoryNotFoundError):
    snapshot_download("nnx-zoo/missing", endpoint=hub, cache_dir=tmp_path)
  with pytest.raises(RevisionNotFoundError):
    api.model_info(REPO, revision="no-such-branch")
  with pytest.raises(RevisionNotFoundError):
    hf_hub_download(REPO, "config.json", revision="f" * 40, endpoint=hub, cache_dir=tmp_path)
  with pytest.raises(RevisionNotFoundError):
    snapshot_download(REPO, revision="no-such-branch", endpoint=hub, cache_dir=tmp_path)
  with pytest.raises(RemoteEntryNotFoundError) as e:
    hf_hub_download(REPO, "no/such/file.json", endpoint=hub, cache_dir=tmp_path)
  assert isinstance(e.value, EntryNotFoundError) and e.value.response.headers["X-Repo-Commit"] == hub.commit
  with pytest.raises(RemoteEntryNotFoundError):
    list(api.list_repo_tree(REPO, path_in_repo="no-such-dir"))
  with pytest.raises(RepositoryNotFoundError):
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="nnx-zoo/missing")


def test_injected_fault_and_request_log(api, hub):
  hub.fail("info", status=503)
  with pytest.raises(HfHubHTTPError) as e:
    api.model_info(REPO)
  assert e.value.response.status_code == 503
  assert api.model_info(REPO).sha == hub.commit  # one fault only
  last = hub.requests[-1]
  assert (last.method, last.route, last.token) == ("GET", "info", TOKEN)


def test_range_requests(hub):
  data = hub.files["state/arrays/params.bin"]
  url = f"{hub}/{REPO}/resolve/main/state/arrays/params.bin"
  with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-"}), timeout=10) as r:
    assert r.status == 206 and r.read() == data[100:]
  with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=5-9"}), timeout=10) as r:
    assert r.read() == data[5:10] and r.headers["Content-Range"] == f"bytes 5-9/{len(data)}"
  with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10) as r:
    assert r.headers["X-Repo-Commit"] == hub.commit and int(r.headers["Content-Length"]) == len(data)
    assert r.read() == b""


def test_lfs_served_files_have_sha256_etags_and_tamper_keeps_them(tmp_path):
  payload = os.urandom(200_000)
  with serve(tmp_path / "hub", lfs_threshold=100_000) as hub:
    hub.store.upload("org/lfs", {"big.bin": payload, "small.json": b"{}"})
    api = HfApi(endpoint=hub)
    tree = {e.path: e for e in api.list_repo_tree("org/lfs")}
    assert tree["big.bin"].lfs.sha256 == hashlib.sha256(payload).hexdigest() and tree["small.json"].lfs is None
    path = hf_hub_download("org/lfs", "big.bin", endpoint=hub, cache_dir=tmp_path / "c1")
    assert os.path.basename(os.path.realpath(path)) == tree["big.bin"].lfs.sha256 == _sha256(path)
    # tamper: same ETag, same size, different bytes; huggingface_hub does not notice, a sha256 check does
    original = hub.tamper("org/lfs", "big.bin")
    assert original == payload
    bad = hf_hub_download("org/lfs", "big.bin", endpoint=hub, cache_dir=tmp_path / "c2")
    assert os.path.basename(os.path.realpath(bad)) == tree["big.bin"].lfs.sha256  # advertised name unchanged
    assert os.path.getsize(bad) == len(payload) and _sha256(bad) != tree["big.bin"].lfs.sha256
    assert api.model_info("org/lfs", files_metadata=True).siblings[1].lfs.sha256 == tree["big.bin"].lfs.sha256
    hub.tamper("org/lfs", "big.bin", original)  # restore
    good = hf_hub_download("org/lfs", "big.bin", endpoint=hub, cache_dir=tmp_path / "c3")
    assert _sha256(good) == tree["big.bin"].lfs.sha256


def test_concurrent_downloads_and_commits(tmp_path):
  with serve(tmp_path / "hub") as hub:
    hub.store.upload("org/c", {"w.bin": os.urandom(500_000)})
    api = HfApi(endpoint=hub, token=TOKEN)
    errors, results = [], {}

    def download(i: int):
      try:
        results[i] = _sha256(hf_hub_download("org/c", "w.bin", endpoint=hub, cache_dir=tmp_path / f"c{i}"))
      except Exception as e:  # noqa: BLE001
        errors.append(e)

    def commit(i: int):
      try:
        api.upload_file(path_or_fileobj=b"%d" % i, path_in_repo=f"n/{i}.txt", repo_id="org/c")
      except Exception as e:  # noqa: BLE001
        errors.append(e)

    threads = [threading.Thread(target=f, args=(i,)) for i in range(8) for f in (download, commit)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(timeout=30)
    assert not errors and len(set(results.values())) == 1 and len(results) == 8
    assert len(api.list_repo_commits("org/c")) == 2 + 8  # initial, upload, 8 commits: none lost
    assert {f for f in api.list_repo_files("org/c") if f.startswith("n/")} == {f"n/{i}.txt" for i in range(8)}


def test_store_persists_across_restarts(tmp_path):
  with serve(tmp_path / "hub") as hub:
    cid = hub.store.upload("org/p", {"a.txt": b"hello"})
  with serve(tmp_path / "hub") as hub:
    api = HfApi(endpoint=hub)
    assert api.model_info("org/p").sha == cid
    assert pathlib.Path(hf_hub_download("org/p", "a.txt", endpoint=hub, cache_dir=tmp_path / "c")).read_bytes() == b"hello"


def test_a_stopped_server_drops_its_keepalive_connections(tmp_path):
  with serve(tmp_path / "a") as first:
    first.store.upload("org/a", {"x": b"1"})
    assert HfApi(endpoint=first).repo_exists("org/a")  # leaves a pooled keep-alive connection in the client
  port = int(first.url.rsplit(":", 1)[1])
  with serve(tmp_path / "b", port=port) as second:  # same endpoint URL, other storage
    assert second.url == first.url
    api = HfApi(endpoint=second)
    assert not api.repo_exists("org/a") and second.count("info") == 1


def _run(code: str, env: dict[str, str], timeout: float = 45) -> subprocess.CompletedProcess:
  full = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
  full.update(env, HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True,
                        timeout=timeout)


def test_hf_endpoint_env_and_offline_mode_in_subprocesses(hub, tmp_path):
  env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": TOKEN}
  online = _run(f"""
import pathlib
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
assert HfApi().whoami()["name"] == "tester"
snap = snapshot_download({REPO!r}, allow_patterns=["*.json", "README.md"])
print(hf_hub_download({REPO!r}, "config.json"))
print(snap)
""", env)
  assert online.returncode == 0, online.stderr
  config_path, snap = online.stdout.split()
  assert pathlib.Path(config_path).read_bytes() == hub.files["config.json"]
  assert str(tmp_path / "hf" / "hub") in snap  # HF_HOME was honoured

  hub.reset_counts()
  offline = _run(f"""
import pathlib
from huggingface_hub import hf_hub_download, snapshot_download, constants
from huggingface_hub.errors import LocalEntryNotFoundError
assert constants.HF_HUB_OFFLINE
snap = pathlib.Path(snapshot_download({REPO!r}, allow_patterns=["*.json", "README.md"]))
assert (snap / "config.json").read_bytes() == {hub.files["config.json"]!r}
assert pathlib.Path(hf_hub_download({REPO!r}, "README.md")).read_bytes() == {hub.files["README.md"]!r}
try:
  hf_hub_download({REPO!r}, "state/arrays/params.bin")
except LocalEntryNotFoundError:
  print("not cached, as expected")
""", {**env, "HF_HUB_OFFLINE": "1"})
  assert offline.returncode == 0, offline.stderr
  assert "not cached, as expected" in offline.stdout
  assert hub.count() == 0  # offline: not one request reached the server


def test_command_line_entry_point(tmp_path):
  proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hub_server.py"), "--root", str(tmp_path / "hub"),
                           "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()  # "Hub-compatible server at http://127.0.0.1:PORT ..."
    url = line.split(" at ", 1)[1].split()[0]
    api = HfApi(endpoint=url, token=TOKEN)
    api.create_repo("org/cli")
    api.upload_file(path_or_fileobj=b"hi", path_in_repo="a.txt", repo_id="org/cli")
    assert pathlib.Path(hf_hub_download("org/cli", "a.txt", endpoint=url, cache_dir=tmp_path / "c")).read_bytes() == b"hi"
  finally:
    proc.terminate()
    proc.wait(timeout=10)
  assert (tmp_path / "hub" / "repos" / "models" / "org" / "cli" / "repo.json").is_file()
