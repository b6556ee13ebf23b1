"""Checkpoints, Hub, CLI and trainer under faults and hostile input (issue 15): every failure typed, no hang, no
silent wrong model. One test (or group) per numbered defect; each failed on the code before the fix."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import zoo
from zoo import checkpoint, cli, errors, hub

from tests.conftest import ROOT

REPO = "nnx-zoo/massnet-sir"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A freshly saved (sealed) massnet-sir checkpoint."""
  model = zoo.create("massnet-sir", seed=3)
  return checkpoint.save(model, tmp_path_factory.mktemp("ck") / "massnet-sir", name="massnet-sir")


@pytest.fixture()
def copy(saved, tmp_path):
  path = tmp_path / "massnet-sir"
  shutil.copytree(saved, path)
  return path


def _manifest(path):
  return json.loads((path / checkpoint.MANIFEST).read_text())


def _write(path, manifest, seal=True):
  """Writes a manifest; `seal` recomputes its self-checksum (as an attacker or a careful editor would)."""
  manifest = {k: v for k, v in manifest.items() if k != checkpoint.SELF_KEY}
  text = checkpoint._manifest_text(manifest) if seal else json.dumps(manifest, indent=2, sort_keys=True)
  (path / checkpoint.MANIFEST).write_text(text)


# --- 1: a normal Hub file (.gitattributes) in the cache snapshot ----------------------------------------------


@pytest.fixture()
def published(hub, tmp_path, monkeypatch):
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "no-checkpoints"))
  zoo.push_to_hub(ROOT / "checkpoints" / "massnet-sir", repo_id=REPO)
  return hub


def test_gitattributes_in_the_cache_snapshot_does_not_break_loading(published):
  from huggingface_hub import hf_hub_download

  zoo.load("massnet-sir")
  path = hf_hub_download(REPO, ".gitattributes", endpoint=published.url,
                         cache_dir=pathlib.Path(os.environ["HF_HOME"]) / "hub")
  model = zoo.load("massnet-sir")  # before: "does not match its manifest: unexpected ['.gitattributes']"
  assert all(c.passed for c in zoo.verify(model))
  snapshot = pathlib.Path(path).parent
  assert checkpoint.is_hf_snapshot(snapshot)
  # An unlisted file inside state/ of a snapshot is still corruption (orbax would read that folder).
  (snapshot / "state" / "stray").write_text("x")
  with pytest.raises(errors.CheckpointCorruptError, match="unexpected"):
    checkpoint.restore(snapshot)


def test_a_local_directory_still_rejects_unlisted_files(copy):
  (copy / ".gitattributes").write_text("*.bin filter=lfs\n")
  with pytest.raises(errors.CheckpointCorruptError, match="unexpected"):
    zoo.load(f"local-dir:{copy}")


# --- 2: an edited manifest in an unpinned source ---------------------------------------------------------------


def test_an_edited_unpinned_manifest_fails_its_self_checksum(copy):
  text = (copy / checkpoint.MANIFEST).read_text()
  assert '"steps_per_block": 3' in text
  (copy / checkpoint.MANIFEST).write_text(text.replace('"steps_per_block": 3', '"steps_per_block": 2'))
  with pytest.raises(errors.CheckpointCorruptError, match="self-checksum"):
    zoo.load(f"local-dir:{copy}")


def test_a_legacy_manifest_loads_only_when_a_pin_covers_it(tmp_path, monkeypatch):
  from zoo import pins
  shutil.copytree(ROOT / "checkpoints" / "volnet-pendulum", tmp_path / "m")
  _write(tmp_path / "m", _manifest(tmp_path / "m"), seal=False)  # the format before the self-checksum existed
  with pytest.raises(errors.CheckpointCorruptError, match="no pin covers it"):
    zoo.load(f"local-dir:{tmp_path / 'm'}")
  digest = checkpoint.sha256_file(tmp_path / "m" / checkpoint.MANIFEST)  # a manifest shipped (pinned) that way
  monkeypatch.setattr(pins, "LEGACY_MANIFESTS", pins.LEGACY_MANIFESTS | {digest})
  zoo.load(f"local-dir:{tmp_path / 'm'}")
  manifest = _manifest(tmp_path / "m")
  manifest["model_kwargs"]["layers"] = 7
  _write(tmp_path / "m", manifest, seal=False)
  with pytest.raises(errors.CheckpointCorruptError, match="no pin covers it"):
    zoo.load(f"local-dir:{tmp_path / 'm'}")


def test_a_flipped_byte_anywhere_in_an_unpinned_checkpoint_is_caught(copy):
  data = bytearray((copy / checkpoint.MANIFEST).read_bytes())
  caught = 0
  positions = range(0, len(data), max(1, len(data) // 40))
  for i in positions:
    flipped = bytearray(data)
    flipped[i] ^= 0x01
    (copy / checkpoint.MANIFEST).write_bytes(bytes(flipped))
    try:
      checkpoint.read_manifest(copy)
    except (errors.CheckpointCorruptError, errors.IncompatibleCheckpointError):
      caught += 1
  assert caught == len(positions)


# --- 3: malformed manifests: one typed error naming the field ----------------------------------------------


def _cases():
  def set_(key, value):
    return lambda m: m.__setitem__(key, value)

  def kw(key, value):
    return lambda m: m["model_kwargs"].__setitem__(key, value)

  def deep(m):
    v = {}
    for _ in range(200):
      v = {"x": v}
    m["config"] = v

  return [
      (set_("files", []), "files"), (set_("files", {"state/x": 3}), "files.state/x"),
      (set_("files", {"../etc/passwd": "0" * 64}), "files.../etc/passwd"),
      (set_("name", 7), "name"), (lambda m: m.pop("model_kwargs"), "model_kwargs"),
      (set_("model_kwargs", [1, 2]), "model_kwargs"), (set_("checks", [{"name": "x"}]), "checks.0.passed"),
      (set_("checks", "all good"), "checks"), (set_("metrics", {"mse": [1]}), "metrics.mse"),
      (set_("plots", ["../x.png"]), "plots.0"), (set_("input_shape", ["3"]), "input_shape.0"),
      (deep, "<root>"), (set_("family", "resnet"), "family"),
      (kw("steps_per_block", 1e6), "model_kwargs.steps_per_block"),
      (kw("steps_per_block", 10**6), "model_kwargs.steps_per_block"),
      (kw("hidden", "50"), "model_kwargs.hidden"), (kw("dim", 0), "model_kwargs.dim"), (kw("no_such_argument", 1), "model_kwargs.no_such_argument"),
      (kw("rngs", 1), "model_kwargs.rngs"), (set_("num_params", "many"), "num_params"),
  ]


@pytest.mark.parametrize("i", range(len(_cases())))
def test_a_malformed_manifest_is_one_typed_error_naming_the_field(copy, i):
  mutate, field = _cases()[i]
  manifest = _manifest(copy)
  mutate(manifest)
  _write(copy, manifest)
  start = time.perf_counter()
  with pytest.raises(errors.ManifestError) as info:
    checkpoint.restore(copy)
  assert info.value.field == field and repr(field)[1:-1] in str(info.value)
  assert time.perf_counter() - start < 5


@pytest.mark.parametrize("text", ["[1, 2]", "null", '"x"', "[" * 100_000 + "]" * 100_000, "{", "\xff\xfe"])
def test_a_manifest_that_is_not_an_object_is_typed(copy, text):
  (copy / checkpoint.MANIFEST).write_bytes(text.encode("utf-8", "surrogateescape")
                                           if text != "\xff\xfe" else b"\xff\xfe")
  with pytest.raises(errors.CheckpointCorruptError):
    checkpoint.restore(copy)


# --- 4: hostile local directories ---------------------------------------------------------------------------


def _bounded(fn, seconds=10):
  """Runs fn in a thread; fails the test (instead of hanging it) when fn does not return in time."""
  out = {}

  def target():
    try:
      fn()
    except BaseException as e:  # noqa: BLE001
      out["error"] = e

  t = threading.Thread(target=target, daemon=True)
  t.start()
  t.join(seconds)
  assert not t.is_alive(), "hung"
  return out.get("error")


def test_symlink_loops_are_rejected_not_walked(copy):
  os.symlink(".", copy / "a")
  os.symlink(".", copy / "b")
  err = _bounded(lambda: checkpoint.restore(copy))
  assert isinstance(err, errors.CheckpointCorruptError) and "symlink" in str(err)


@pytest.mark.parametrize("kind", ["fifo", "device", "outside"])
def test_special_files_listed_in_the_manifest_are_rejected(copy, tmp_path, kind):
  target = copy / "state" / "extra"
  if kind == "fifo":
    os.mkfifo(target)
  elif kind == "device":
    os.symlink("/dev/zero", target)
  else:
    (tmp_path / "secret").write_text("outside")
    os.symlink(tmp_path / "secret", target)
  manifest = _manifest(copy)
  manifest["files"]["state/extra"] = "0" * 64
  _write(copy, manifest)
  err = _bounded(lambda: checkpoint.restore(copy))
  assert isinstance(err, errors.CheckpointCorruptError), err
  err = _bounded(lambda: checkpoint.sha256_file(target))  # even asked directly: no endless read
  assert kind == "outside" or isinstance(err, errors.CheckpointCorruptError)


def test_oversized_files_are_rejected(copy, monkeypatch):
  monkeypatch.setenv("ZOO_MAX_FILE_BYTES", "100")
  with pytest.raises(errors.CheckpointCorruptError, match="over the limit"):
    checkpoint.restore(copy)


# --- 5: network failures are typed, bounded in time ----------------------------------------------------------


@pytest.mark.parametrize("repo", ["bad id", "../x", "a/b/c", "", "x/..", "-/-"])
def test_odd_repo_ids_are_typed(repo):
  with pytest.raises(errors.InvalidSourceError):
    hub.download(repo)
  with pytest.raises(errors.InvalidSourceError):
    zoo.load(f"hf://{repo}")


def test_no_network_is_typed_within_5_seconds(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "none"))
  monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
  start = time.perf_counter()
  with pytest.raises(errors.HubUnavailableError):
    zoo.load("massnet-sir")
  with pytest.raises(errors.HubUnavailableError):
    zoo.push_to_hub(ROOT / "checkpoints" / "massnet-sir", repo_id="me/x")
  assert time.perf_counter() - start < 5


@pytest.fixture()
def silent_server():
  """Accepts connections and never answers (a stalled Hub); or closes them at once with `cut=True`."""
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  sock.listen(64)
  held, stop = [], threading.Event()
  mode = {"cut": False}

  def serve():
    sock.settimeout(0.1)
    while not stop.is_set():
      try:
        conn, _ = sock.accept()
      except OSError:
        continue
      if mode["cut"]:
        conn.recv(65536)
        conn.close()
      else:
        held.append(conn)

  t = threading.Thread(target=serve, daemon=True)
  t.start()
  yield f"http://127.0.0.1:{sock.getsockname()[1]}", mode
  stop.set()
  t.join(2)
  for c in held:
    c.close()
  sock.close()


@pytest.mark.parametrize("cut", [False, True])
def test_a_stalled_or_cut_connection_is_typed_within_the_deadline(silent_server, tmp_path, monkeypatch, cut):
  url, mode = silent_server
  mode["cut"] = cut
  monkeypatch.setenv("HF_ENDPOINT", url)
  monkeypatch.setenv("ZOO_HUB_TIMEOUT", "2")
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
  start = time.perf_counter()
  with pytest.raises(errors.HubUnavailableError):
    zoo.load("hf://me/stalled")
  with pytest.raises(errors.HubUnavailableError):
    zoo.push_to_hub(ROOT / "checkpoints" / "massnet-sir", repo_id="me/stalled")
  assert time.perf_counter() - start < 8


def test_server_errors_are_typed_within_the_deadline(published, monkeypatch):
  monkeypatch.setenv("ZOO_HUB_TIMEOUT", "3")
  published.fail("resolve", 500, times=50)
  start = time.perf_counter()
  with pytest.raises(errors.HubUnavailableError):
    zoo.load("massnet-sir")
  assert time.perf_counter() - start < 6


def test_auth_errors_are_named(tmp_path, monkeypatch):
  from tests import hub_server

  with hub_server.serve(tmp_path / "hub", require_token=True) as server:
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(errors.HubAuthError, match="HF_TOKEN"):
      zoo.push_to_hub(ROOT / "checkpoints" / "massnet-sir", repo_id="me/private")


# --- 6: the CLI: one line, non-zero exit, traceback only with --debug ----------------------------------------


def test_cli_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
  afile = tmp_path / "file"
  afile.write_text("x")
  binary = tmp_path / "t.bin"
  binary.write_bytes(bytes(range(256)))
  export = tmp_path / "export"
  shutil.copytree(ROOT / "checkpoints" / "massnet-sir", export)
  cases = [["verify", "hf:/typo"], ["download", "bad id"], ["push", "massnet-sir", "--repo-id", "bad id"],
           ["run", "massnet-sir", "--out", str(afile)], ["cards", "--output", str(tmp_path / "missing" / "x.md")],
           ["ship", str(export), "--section", f"T={binary}"], ["verify", "MASSNET-SIR"],
           ["download", "../x"], ["verify", f"local-dir:{tmp_path / 'nothing'}"], ["ship", str(afile)]]
  for argv in cases:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code != 0, argv
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
  garbage = tmp_path / "ckpts" / "massnet-sir"
  garbage.mkdir(parents=True)
  (garbage / "manifest.json").write_text("{not json")
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "ckpts"))
  assert cli.main(["info", "massnet-sir"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "git checkout" in err
  with pytest.raises(errors.ZooError):
    cli.main(["--debug", "download", "bad id"])


# --- 7: concurrency: the lock, and a bounded stress run (-m slow) ------------------------------------------


def test_the_directory_lock_excludes_other_processes(tmp_path, monkeypatch):
  code = ("import sys, time\nfrom zoo import checkpoint\nwith checkpoint.locked(sys.argv[1]):\n"
          "  print('held', flush=True)\n  time.sleep(30)\n")
  proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d")], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True)
  try:
    assert proc.stdout.readline().strip() == "held"
    monkeypatch.setenv("ZOO_LOCK_TIMEOUT", "0.5")
    with pytest.raises(errors.LockTimeoutError):
      with checkpoint.locked(tmp_path / "d"):
        pass
  finally:
    proc.kill()
    proc.wait()
  with checkpoint.locked(tmp_path / "d"):  # released with its holder
    pass


def test_recover_waits_for_a_writer_between_its_renames(copy, monkeypatch):
  """The race of the stress run, made deterministic: a reader's recover() while a writer sits between its two
  renames (`NAME` gone, `.NAME.old` present) must not put the old copy back under the writer."""
  old = copy.parent / f".{copy.name}.old"
  monkeypatch.setenv("ZOO_LOCK_TIMEOUT", "0.5")
  with checkpoint.locked(copy):
    os.rename(copy, old)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("e", _bounded(lambda: checkpoint.recover(copy))))
    t.start()
    t.join(5)
    assert not copy.exists()  # the reader waited (and timed out), it did not rename behind the writer's back
    os.rename(old, copy)
  assert isinstance(result["e"], errors.LockTimeoutError)


@pytest.mark.slow
def test_concurrent_ships_and_loads_never_fail(tmp_path):
  """2 shippers (--replace) and 2 loaders of the same model for a bounded number of rounds: zero failures, no
  temporary folder left behind."""
  export = tmp_path / "export"
  shutil.copytree(ROOT / "checkpoints" / "massnet-sir", export)
  env = {**os.environ, "ZOO_CHECKPOINTS": str(tmp_path / "ckpts"), "ZOO_PINS": str(tmp_path / "pins.json")}
  shutil.copyfile(ROOT / "checkpoints" / "pins.json", tmp_path / "pins.json")
  subprocess.run([sys.executable, "-m", "zoo.cli", "ship", str(export)], cwd=ROOT, env=env, check=True,
                 capture_output=True)
  ship = (f"import sys\nfrom zoo import hub\nfor _ in range(6): hub.ship({str(export)!r}, replace=True)\n")
  load = ("import zoo\nfor _ in range(6): zoo.load('massnet-sir')\n"
          f"for _ in range(6): zoo.load('local-dir:{tmp_path / 'ckpts' / 'massnet-sir'}')\n")
  procs = [subprocess.Popen([sys.executable, "-c", c], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
           for c in (ship, ship, load, load)]
  for p in procs:
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
  assert not [p.name for p in (tmp_path / "ckpts").iterdir() if p.name.startswith(".")]


# --- 8: ship validates the name before any write -------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil-abs", "Massnet-SIR", "a/b"])
def test_ship_refuses_a_bad_name_before_writing(copy, tmp_path, monkeypatch, name):
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "ckpts" / "inner"))
  manifest = _manifest(copy)
  manifest["name"] = name
  _write(copy, manifest)
  before = set(tmp_path.rglob("*"))
  with pytest.raises(errors.ManifestError, match="name"):
    hub.ship(copy)
  assert set(tmp_path.rglob("*")) == before
  assert not pathlib.Path("/tmp/evil-abs").exists()


# --- 9: the trainer validates its config first and never exports NaN weights -----------------------------


def _config(**changes):
  from zoo import training

  c = training.shrink(training.base_config(model="massnet-sir", dataset="sir"))
  c.best_metric = "test_mse"
  return training.override(c, changes, sep="__")


@pytest.mark.parametrize("change, field", [
    ({"optimizer__lr": float("nan")}, "optimizer.lr"), ({"optimizer__lr": 1e6}, "optimizer.lr"),
    ({"optimizer__lr": -1e-3}, "optimizer.lr"), ({"optimizer__lr": float("inf")}, "optimizer.lr"),
    ({"epochs": 0}, "epochs"), ({"epochs": -3}, "epochs"),
    ({"batch_size": 0}, "batch_size"), ({"best_mode": "up"}, "best_mode"),
    ({"optimizer__name": "nope"}, "optimizer.name"), ({"optimizer__schedule": "linear"}, "optimizer.schedule"),
])
def test_bad_configs_are_refused_before_any_work(tmp_path, change, field):
  from train import trainer

  with pytest.raises(errors.ConfigError) as info:
    trainer.train_and_evaluate(_config(**change), tmp_path / "run")
  assert info.value.field == field and field in str(info.value)
  assert not (tmp_path / "run").exists()


def test_model_overrides_are_checked_and_settable_from_flags(tmp_path):
  from train import trainer
  from train.__main__ import split_model_overrides

  rest, overrides = split_model_overrides(
      ["train", "--config=c.py", "--config.model_overrides.hidden=20", "--config.model_overrides.widths",
       "(4, 4)", "--workdir", "w"])
  assert rest == ["train", "--config=c.py", "--workdir", "w"] and overrides == {"hidden": 20, "widths": (4, 4)}
  c = _config()
  c.model_overrides.hidden = 1e6
  with pytest.raises(errors.ConfigError, match="model_overrides.hidden"):
    trainer.train_and_evaluate(c, tmp_path / "run")
  (tmp_path / "afile").write_text("x")
  with pytest.raises(errors.ConfigError, match="workdir"):
    trainer.train_and_evaluate(_config(), tmp_path / "afile")


@pytest.mark.slow  # a smoke run's data and compile: ~25 s here
def test_unknown_best_metric_and_nonfinite_loss_stop_before_export(tmp_path, monkeypatch):
  from train import trainer

  with pytest.raises(errors.ConfigError, match="best_metric"):
    trainer.train_and_evaluate(_config(best_metric="accuracy"), tmp_path / "a")
  assert not (tmp_path / "a" / "checkpoints").exists() or not any((tmp_path / "a" / "checkpoints").iterdir())

  real = trainer.make_train_step

  def diverging(loss):
    step = real(loss)
    return lambda *a: (float("nan"), step(*a)[1])

  monkeypatch.setattr(trainer, "make_train_step", diverging)
  with pytest.raises(errors.TrainingDivergedError, match="nan"):
    trainer.train_and_evaluate(_config(), tmp_path / "b")
  assert not (tmp_path / "b" / "export").exists()


# --- 10: smaller items ----------------------------------------------------------------------------------------


def test_close_matches_ignore_case():
  with pytest.raises(errors.UnknownModelError, match="massnet-sir"):
    zoo.get_spec("MASSNET-SIR")


def test_metrics_log_keeps_no_repeated_steps_after_a_resume(tmp_path):
  from train import trainer

  log = tmp_path / "metrics.jsonl"
  log.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
  trainer._truncate_log(log, 4)
  assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_killed_saves_temporary_folder_is_cleaned(tmp_path):
  stale = tmp_path / ".massnet-sir.tmp-999999999-abc"
  stale.mkdir()
  (stale / "junk").write_text("x")
  checkpoint.save(zoo.create("massnet-sir"), tmp_path / "massnet-sir", name="massnet-sir")
  assert not stale.exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["massnet-sir"]


def test_train_main_exits_nonzero_when_the_exports_checks_fail(monkeypatch, capsys):
  import types

  import train.__main__ as entry
  from zoo import training

  config = training.base_config(model="massnet-sir", dataset="sir")
  monkeypatch.setattr(entry, "_CONFIG", types.SimpleNamespace(value=config))
  monkeypatch.setattr(entry, "_WORKDIR", types.SimpleNamespace(value="unused"))
  monkeypatch.setattr(entry, "_MODEL_OVERRIDES", {"hidden": 20})
  seen = {}

  def fake(cfg, workdir):
    seen["hidden"] = cfg.model_overrides.hidden
    return {"checks_passed": False, "checks": ["mass conservation: FAILED"]}

  monkeypatch.setattr(entry, "train_and_evaluate", fake)
  with pytest.raises(SystemExit) as info:
    entry.main([])
  assert info.value.code == 1 and seen["hidden"] == 20
  assert "checks failed" in capsys.readouterr().err

  def bad(cfg, workdir):
    raise errors.ConfigError("epochs", "config.epochs = 0: must be ...")

  monkeypatch.setattr(entry, "train_and_evaluate", bad)
  with pytest.raises(SystemExit) as info:
    entry.main([])
  assert info.value.code == 2 and capsys.readouterr().err.startswith("error: ConfigError")
