"""Card plots a reader understands: every panel with data has axis labels, a panel with several labelled lines has a
legend, and the file name says what it shows (checked on the shipped models' plots, drawn afresh)."""

import pytest

import zoo
import zoo.data
from zoo import plotting

DRAWN = []


@pytest.fixture()
def inspect_figures(monkeypatch):
  real = plotting.save

  def save(fig, outdir, filename, dpi=110):
    DRAWN.append((filename, [(ax.get_xlabel(), ax.get_ylabel(), ax.get_legend() is not None,
                              [l.get_label() for l in ax.get_lines() if not l.get_label().startswith("_")],
                              bool(ax.has_data())) for ax in fig.axes if ax.get_label() != "<colorbar>"]))
    return real(fig, outdir, filename, dpi)

  DRAWN.clear()
  monkeypatch.setattr(plotting, "save", save)
  return DRAWN


@pytest.mark.parametrize("name", ["massnet-sir", pytest.param("volnet-pendulum", marks=pytest.mark.slow)])
def test_plots_have_labels_and_legends(name, inspect_figures, tmp_path):
  spec = zoo.get_spec(name)
  model = zoo.load(name)
  data = {k: v[:16] for k, v in zoo.data.load(spec.dataset, "test").items()}
  with spec.family.precision():
    paths = spec.family.plot(model, data, tmp_path)
  assert paths and inspect_figures
  for filename, axes in inspect_figures:
    assert filename != f"{spec.family.name}.png" and filename.endswith(".png")
    for xlabel, ylabel, legend, labelled, has_data in axes:
      if has_data:
        assert xlabel and ylabel, f"{filename}: a panel without axis labels"
      if len(labelled) > 1:
        assert legend, f"{filename}: lines {labelled} without a legend"
