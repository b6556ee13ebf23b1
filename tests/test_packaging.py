"""What `pip install nnx-zoo` puts on a user's path: only the `zoo` package (no top-level `train`), the card prose;
`python -m train` keeps working from a clone, and `zoo train` outside a clone says what to do."""

import subprocess
import sys
import tomllib
import zipfile

import pytest
import setuptools

from zoo import cli

from tests.conftest import ROOT


def _packages() -> list[str]:
  find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
  return setuptools.find_packages(where=str(ROOT), include=find["include"], exclude=find.get("exclude", ()))


def test_only_zoo_is_installed_as_a_top_level_package():
  packages = _packages()
  assert {p.split(".")[0] for p in packages} == {"zoo"}
  for sub in ("zoo.models.elcd", "zoo.models.resnet", "zoo.nn", "zoo.quant", "zoo.data", "zoo.tasks"):
    assert sub in packages


def test_python_m_train_works_from_the_clone():
  out = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
  assert "--workdir" in out.stdout and "configs/FAMILY.py" in out.stdout  # absl prints its help, exits 1


def test_zoo_train_outside_a_clone_says_where_the_trainer_is(monkeypatch, capsys):
  monkeypatch.setattr(cli, "repo_root", lambda: None)
  assert cli.main(["train", "--config", "configs/massnet.py:sir", "--workdir", "w"]) == 2
  err = capsys.readouterr().err
  assert "clone" in err and "python -m train" in err


@pytest.mark.slow
def test_the_built_wheel_holds_zoo_only(tmp_path):
  """Builds the wheel (pip fetches the build backend from the package index; skipped when that is unreachable)."""
  src = tmp_path / "src"
  files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
  for rel in files:
    if rel.split("/")[0] in ("checkpoints", "tests", "benchmarks"):
      continue
    (src / rel).parent.mkdir(parents=True, exist_ok=True)
    (src / rel).write_bytes((ROOT / rel).read_bytes())
  out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "whl"), str(src)],
                       capture_output=True, text=True, timeout=600)
  if out.returncode != 0:
    pytest.skip(f"cannot build the wheel here: {out.stderr[-300:]}")
  (wheel,) = (tmp_path / "whl").glob("*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  assert {n.split("/")[0] for n in names} == {"zoo", "nnx_zoo-0.1.0.dist-info"}
  assert any(n.startswith("zoo/models/") and n.endswith(".md") for n in names)  # card prose ships
