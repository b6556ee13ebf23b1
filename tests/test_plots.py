"""Card plots a reader understands: every panel with data has axis labels that state their unit, a panel with
several lines has a legend that names every labelled line, the file name says what the plot shows (checked on a
shipped model of every family with a plot, drawn afresh), and no plot is copied into several cards."""

import collections
import hashlib
import pathlib
import re

import pytest

import zoo
import zoo.data
from zoo import hub, plotting, registry

DRAWN = []
# One shipped model per family with a plot; the slow ones compile long rollouts, QP solves or PGD attacks.
FAST = ["massnet-sir", "resnet18-digits-idkm-b2", "wavemix-lite-digits"]
SLOW = ["volnet-pendulum", "elcd-lasa2d-angle", "elcd-lasa4d", "invariance-node-spiral", "nonexpansive-resnet-digits"]
UNIT = re.compile(r"\(.+\)")  # "quantity (unit)": every axis label states its unit in parentheses


def _panel(ax):
  lines = [l for l in ax.get_lines() if len(l.get_xdata()) or l.get_label() and not l.get_label().startswith("_")]
  labelled = [a.get_label() for a in [*ax.get_lines(), *ax.patches, *ax.collections, *ax.containers]
              if a.get_label() and not a.get_label().startswith("_")]
  legend = ax.get_legend()
  return {"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "has_data": bool(ax.has_data()),
          "lines": len(lines), "labelled": labelled,
          "legend": [t.get_text() for t in legend.get_texts()] if legend is not None else None}


@pytest.fixture()
def inspect_figures(monkeypatch):
  real = plotting.save

  def save(fig, outdir, filename, dpi=110):
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    DRAWN.append((filename, [_panel(ax) for ax in fig.axes if ax not in colorbars],
                  [ax.get_ylabel() or ax.get_xlabel() for ax in colorbars]))
    return real(fig, outdir, filename, dpi)

  DRAWN.clear()
  monkeypatch.setattr(plotting, "save", save)
  return DRAWN


def check_figures(spec, drawn) -> None:
  """The rules every card plot follows (raises AssertionError naming the file and the panel)."""
  arch_names = {spec.family.name, spec.name, spec.name.split("-")[0], "resnet18", "robustness"}
  for filename, panels, colorbars in drawn:
    assert filename.endswith(".png") and filename[:-4] not in arch_names, (
        f"{filename}: the file name should say what the plot shows, not which model drew it")
    for k, p in enumerate(panels):
      where = f"{filename}, panel {k}"
      if p["has_data"]:
        assert p["xlabel"] and p["ylabel"], f"{where}: a panel without axis labels"
        for label in (p["xlabel"], p["ylabel"]):
          assert UNIT.search(label), f"{where}: axis label {label!r} does not state its unit, e.g. 't (s)'"
      if p["lines"] > 1:
        assert p["legend"], f"{where}: {p['lines']} lines without a legend"
      if p["legend"] is not None:
        missing = [l for l in p["labelled"] if l not in p["legend"]]
        assert not missing, f"{where}: labelled {missing} but the legend shows {p['legend']}"
    for label in colorbars:
      assert label and UNIT.search(label), f"{filename}: a colour bar without a label stating its unit"


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_plots_have_labels_units_and_legends(name, inspect_figures, tmp_path):
  spec = registry.get_spec(name)
  model = zoo.load(name)
  data = {k: v[:16] for k, v in zoo.data.load(spec.dataset, "test").items()}
  with spec.family.precision():
    paths = spec.family.plot(model, data, tmp_path)
  assert paths and len(inspect_figures) == len(paths), "every card plot is saved through zoo.plotting.save"
  check_figures(spec, inspect_figures)


def test_every_family_with_a_plot_is_covered():
  families = {s.family.name for s in registry.specs() if s.family.plot is not None}
  covered = {registry.get_spec(n).family.name for n in FAST + SLOW}
  assert families <= covered, f"add a shipped model of {sorted(families - covered)} to FAST or SLOW"


def test_the_rules_catch_an_unlabelled_plot(inspect_figures, tmp_path):
  """The checks fail on what they are meant to catch: no unit, several lines without a legend, a model's name."""
  plt = plotting.pyplot()
  spec = registry.get_spec("massnet-sir")
  for labels, legend, filename in ((("t", "y (m)"), True, "drift.png"), (("t (s)", "y (m)"), False, "drift.png"),
                                   (("t (s)", "y (m)"), True, "massnet.png")):
    inspect_figures.clear()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    ax.set(xlabel=labels[0], ylabel=labels[1])
    if legend:
      ax.legend()
    plotting.save(fig, tmp_path, filename)
    with pytest.raises(AssertionError):
      check_figures(spec, inspect_figures)


def test_no_two_cards_ship_the_same_plot():
  """A plot is drawn from its own model; a benchmark's plot lives in benchmarks/results (linked), not in cards."""
  by_digest = collections.defaultdict(list)
  for directory in sorted(hub.checkpoints_dir().iterdir()):
    for png in sorted(directory.glob("*.png")):
      by_digest[hashlib.sha256(png.read_bytes()).hexdigest()].append(f"{directory.name}/{png.name}")
  shared = [paths for paths in by_digest.values() if len(paths) > 1]
  assert not shared, f"the same plot in several cards: {shared}"
  assert by_digest, "no shipped plot found"


def test_benchmark_plots_live_with_their_benchmark_and_the_index_links_them():
  from zoo import cards  # pylint: disable=import-outside-toplevel

  root = hub.checkpoints_dir().parent
  index = (root / "MODEL_CARDS.md").read_text()
  for path in cards.INDEX_PLOTS:
    assert (root / path).is_file() and path.startswith("benchmarks/results/")
    assert f"]({path})" in index
    assert not list(hub.checkpoints_dir().glob(f"*/{pathlib.PurePath(path).name}")), f"{path} copied into a card"
