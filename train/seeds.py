"""Seeds trained side by side (`--config.num_seeds=S`): S copies of a model and its optimizer as one NNX object whose
every variable has a leading seed axis, trained by one compiled program (`nnx.vmap` of the train step).

Seed i of a run is `config.seed + i`: its initial weights are `spec.build(config.seed + i)` (built one by one, so
they are exactly those of a one-seed run with that seed) and its batches are `train.trainer.batch_order(config.seed
+ i, epoch, ...)`. The stacked state is what orbax checkpoints (a resume restores every seed exactly); `unstack`
gives each seed's model for evaluation and export.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx


def of(config: ml_collections.ConfigDict) -> list[int]:
  """The run's seeds: config.seed, config.seed + 1, ..., config.seed + num_seeds − 1."""
  return [int(config.seed) + i for i in range(int(config.get("num_seeds", 1)))]


def stack(objects: Sequence[Any]) -> Any:
  """One NNX object (a module, an optimizer) whose variables are those of `objects`, stacked on a new leading axis.
  The objects must have the same structure (one graph definition): the same model built from different seeds."""
  splits = [nnx.split(o) for o in objects]
  graphdef = splits[0][0]
  if any(g != graphdef for g, _ in splits[1:]):
    raise ValueError("seeds side by side need models of one structure; these differ in their static attributes.")
  return nnx.merge(graphdef, jax.tree.map(lambda *xs: jnp.stack(xs), *(s for _, s in splits)))


def unstack(obj: Any) -> list[Any]:
  """The objects `stack` made: one per entry of the leading axis (slices of the arrays, no copy of the structure)."""
  graphdef, state = nnx.split(obj)
  count = {int(x.shape[0]) for x in jax.tree.leaves(state)}
  if len(count) != 1:
    raise ValueError(f"not a stacked object: its variables' leading axes differ ({sorted(count)}).")
  return [nnx.merge(graphdef, jax.tree.map(lambda x, i=i: x[i], state)) for i in range(count.pop())]


def summary(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
  """{metric: {"mean", "std", "min", "max", "n"}} over the seeds' metrics; std is the sample standard deviation
  (ddof = 1; 0 for one seed)."""
  out = {}
  for key in per_seed[0]:
    values = np.asarray([float(m[key]) for m in per_seed], np.float64)
    out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()), "max": float(values.max()), "n": len(values)}
  return out


def best_index(per_seed: Sequence[Mapping[str, float]], metric: str, mode: str) -> int:
  """The seed (index) with the best `metric` ("min" or "max"); non-finite values lose; the first one on ties."""
  sign = 1.0 if mode == "min" else -1.0
  scores = [sign * float(m[metric]) if math.isfinite(float(m[metric])) else math.inf for m in per_seed]
  return int(np.argmin(scores))


def _num(value: float) -> str:
  return f"{value:.4g}"


def card_section(seeds: Sequence[int], per_seed: Sequence[Mapping[str, float]], exported: int, metric: str,
                 mode: str, best_step: int | None) -> str:
  """The card's "Seeds" section: every seed's metrics, mean ± std, and which seed these weights are."""
  keys = list(per_seed[0])
  stats = summary(per_seed)
  lines = [f"Trained as {len(seeds)} seeds side by side in one compiled program (`num_seeds={len(seeds)}`: seeds "
           f"{seeds[0]}-{seeds[-1]}, each with its own initial weights and batch order, as in {len(seeds)} "
           f"separate runs, to round-off). These weights are seed {seeds[exported]}, the best by `{metric}` ({mode}) at the "
           f"checkpoint chosen by the seeds' mean `{metric}` (step {best_step}); its metrics above are one seed's, "
           f"selected as the best of {len(seeds)}. Every seed's metrics on the same split, and mean ± sample std "
           f"(ddof = 1):", "",
           "| seed | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
  for seed, metrics in zip(seeds, per_seed):
    mark = " (these weights)" if seed == seeds[exported] else ""
    lines.append(f"| {seed}{mark} | " + " | ".join(_num(metrics[k]) for k in keys) + " |")
  lines.append("| **mean ± std** | " + " | ".join(f"{_num(stats[k]['mean'])} ± {_num(stats[k]['std'])}"
                                                    for k in keys) + " |")
  return "\n".join(lines)
