"""Seeds side by side (`--config.num_seeds=S`): one compiled program trains S seeds with the per-seed weights and
losses of S separate runs, resumes exactly, exports the best seed with every seed's metrics (mean ± std) in its card
and WORKDIR/result.json; bad values are refused before any work."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from huggingface_hub import ModelCard

from tests.test_train import _config
from train import seeds
from train.trainer import train_and_evaluate, validate_config
from zoo import errors


def _latest_state(workdir):
  """The latest checkpoint's model + optimizer state as host arrays (stacked ones with their seed axis), float64 kept
  (outside an x64 scope JAX would truncate massnet's float64 weights to float32)."""
  with jax.enable_x64(True), ocp.CheckpointManager((workdir / "checkpoints").absolute()) as manager:
    state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
    return jax.tree.map(np.asarray, state)


def _records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _assert_seed_matches(stacked_dir, index, single_dir):
  """Seed `index` of a side-by-side run has the final weights, optimizer state and per-step losses of the
  one-seed run in `single_dir` (float64 massnet: to round-off; measured up to 4.5e-12 relative after 2 epochs)."""
  stacked, single = _latest_state(stacked_dir), _latest_state(single_dir)
  pairs = list(zip(jax.tree.leaves(stacked), jax.tree.leaves(single)))
  assert len(pairs) == len(jax.tree.leaves(single)) > 4
  assert np.dtype(np.float64) in {a.dtype for a, _ in pairs}  # massnet's weights, compared in full precision
  for a, b in pairs:
    np.testing.assert_allclose(np.asarray(a)[index], np.asarray(b), rtol=1e-10, atol=1e-12)
  many, one = _records(stacked_dir), _records(single_dir)
  assert [r["step"] for r in many] == [r["step"] for r in one]
  np.testing.assert_allclose([r["seeds"]["loss"][index] for r in many], [r["loss"] for r in one], rtol=1e-10)
  for r in many:
    assert r["loss"] == pytest.approx(np.mean(r["seeds"]["loss"]), rel=1e-12)


def test_stack_unstack_summary_and_best_seed():
  from flax import nnx

  from zoo import registry

  spec = registry.get_spec("massnet-sir")
  with spec.family.precision():  # float64 family
    models = [spec.build(s) for s in (0, 1)]
    back = seeds.unstack(seeds.stack(models))
    assert len(back) == 2
    for original, copy in zip(models, back):
      for a, b in zip(jax.tree.leaves(nnx.state(original)), jax.tree.leaves(nnx.state(copy))):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  stats = seeds.summary([{"acc": 1.0}, {"acc": 2.0}, {"acc": 3.0}])
  assert stats["acc"] == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 3}  # sample std (ddof = 1)
  per_seed = [{"loss": 0.5}, {"loss": float("nan")}, {"loss": 0.2}]
  assert seeds.best_index(per_seed, "loss", "min") == 2 and seeds.best_index(per_seed, "loss", "max") == 0


def test_two_seeds_side_by_side_train_like_separate_runs(tmp_path):
  """num_seeds=2 (seeds 0, 1) in one program: seed 1 has the weights and losses of a one-seed run with seed 1;
  result.json names the better seed and gives both seeds' metrics and their mean ± std."""
  settings = {"seed": 0, "epochs": 1, "export": False}
  result = train_and_evaluate(_config(num_seeds=2, **settings), tmp_path / "both")
  train_and_evaluate(_config(**{**settings, "seed": 1}), tmp_path / "one")
  _assert_seed_matches(tmp_path / "both", 1, tmp_path / "one")

  written = json.loads((tmp_path / "both" / "result.json").read_text())
  assert [s["seed"] for s in written["seeds"]] == [0, 1] and result["exported_seed"] == written["exported_seed"]
  per_seed = [s["metrics"]["test_mse"] for s in written["seeds"]]
  assert written["exported_seed"] == int(np.argmin(per_seed))  # best_metric test_mse, best_mode min
  assert written["metrics"] == written["seeds"][written["exported_seed"]]["metrics"]
  summary = written["seed_summary"]["test_mse"]
  assert summary["mean"] == pytest.approx(np.mean(per_seed))
  assert summary["std"] == pytest.approx(np.std(per_seed, ddof=1))


def test_seeds_card_section_lists_every_seed_and_mean_std():
  text = seeds.card_section([3, 4, 5], [{"acc": 0.5}, {"acc": 0.75}, {"acc": 1.0}], 2, "acc", "max", 40)
  assert "| 5 (these weights) | 1 |" in text and "| 3 | 0.5 |" in text
  assert "| **mean ± std** | 0.75 ± 0.25 |" in text and "step 40" in text and "seeds 3-5" in text


@pytest.mark.slow  # a side-by-side run to its export (~22 s here)
def test_seeds_side_by_side_export_the_best_seed_with_every_seeds_metrics(tmp_path):
  from zoo import checkpoint

  result = train_and_evaluate(_config(seed=0, num_seeds=2), tmp_path / "run")
  assert result["checks_passed"]
  card = (tmp_path / "run" / "export" / "README.md").read_text()
  assert "## Seeds" in card and "**mean ± std**" in card and f"| {result['exported_seed']} (these weights) |" in card
  model, manifest = checkpoint.restore(tmp_path / "run" / "export")  # a normal zoo checkpoint
  assert manifest["metrics"]["seed"] == result["exported_seed"]  # bookkeeping, not an evaluation result
  assert "seed" not in {r.metric_type for r in ModelCard(card).data.eval_results}
  assert {k: v for k, v in manifest["metrics"].items() if k in result["metrics"]} == result["metrics"]


@pytest.mark.slow  # five trainer runs (~32 s here)
def test_three_seeds_side_by_side_equal_three_separate_runs(tmp_path):
  """The issue's check: num_seeds=3 gives, seed by seed, the final parameters, optimizer state and losses of three
  separate runs with seeds 0, 1, 2 (one step at a time and one scan per epoch)."""
  settings = {"seed": 0, "epochs": 2, "export": False}
  train_and_evaluate(_config(num_seeds=3, **settings), tmp_path / "three")
  train_and_evaluate(_config(num_seeds=3, scan_epoch=True, **settings), tmp_path / "three-scan")
  for seed in range(3):
    train_and_evaluate(_config(**{**settings, "seed": seed}), tmp_path / f"seed{seed}")
    _assert_seed_matches(tmp_path / "three", seed, tmp_path / f"seed{seed}")
    _assert_seed_matches(tmp_path / "three-scan", seed, tmp_path / f"seed{seed}")


@pytest.mark.slow  # three trainer runs (~10 s here)
def test_seeds_side_by_side_resume_exactly(tmp_path):
  """Stopped after epoch 1 and resumed (orbax holds the stacked state): the weights of an uninterrupted run."""
  settings = {"seed": 0, "num_seeds": 2, "export": False}
  train_and_evaluate(_config(epochs=2, **settings), tmp_path / "straight")
  train_and_evaluate(_config(epochs=1, **settings), tmp_path / "resumed")
  train_and_evaluate(_config(epochs=2, **settings), tmp_path / "resumed")
  for a, b in zip(jax.tree.leaves(_latest_state(tmp_path / "straight")),
                  jax.tree.leaves(_latest_state(tmp_path / "resumed"))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert [r["step"] for r in _records(tmp_path / "resumed")] == [r["step"] for r in _records(tmp_path / "straight")]


@pytest.mark.slow  # a trainer run that loads a shipped model (~10 s here)
def test_init_from_starts_every_seed_at_the_shipped_weights(tmp_path):
  from flax import nnx

  import zoo
  train_and_evaluate(_config(init_from="massnet-sir", num_seeds=2, export=False, **{"optimizer.lr": 0.0}),
                     tmp_path / "run")
  model = _latest_state(tmp_path / "run")["model"]
  shipped = nnx.state(zoo.load("massnet-sir"), nnx.Param).to_pure_dict()
  for path, value in jax.tree_util.tree_leaves_with_path(shipped):
    stacked = model
    for key in path:  # orbax gives list indices back as strings
      stacked = stacked[key.key] if key.key in stacked else stacked[str(key.key)]
    for seed in range(2):  # lr 0: both seeds are still the shipped weights
      np.testing.assert_array_equal(np.asarray(stacked)[seed], np.asarray(value))


@pytest.mark.parametrize("value", [0, -2, 5000])  # ml_collections refuses non-integers itself
def test_bad_num_seeds_is_refused_before_any_work(tmp_path, value):
  with pytest.raises(errors.ConfigError) as info:
    train_and_evaluate(_config(num_seeds=value), tmp_path / "run")
  assert info.value.field == "num_seeds" and "num_seeds" in str(info.value)
  assert not (tmp_path / "run").exists()


def test_seeds_side_by_side_refuse_several_processes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(errors.ConfigError, match="several processes") as info:
    train_and_evaluate(_config(num_seeds=2), tmp_path / "run")
  assert info.value.field == "num_seeds"
  validate_config(_config(num_seeds=1))  # one seed: as before
