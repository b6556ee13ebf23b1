"""The paper's obstacle specifications of the spiral experiment (Weixy21/InvarianceNODE, spiral/test.py)."""

from __future__ import annotations

from zoo.nn.cbf import Obstacles

# The paper's spiral specification (spiral/test.py): discs of radius 0.2 at (0, 1.2) and (-0.9, 0), p = 20
# (its "non-conservative" CBF; p = 10 is the "rough" one).
PAPER_OBSTACLES = dict(centers=((0.0, 1.2), (-0.9, 0.0)), radii=(0.2, 0.2), gains=(20.0, 20.0), powers=(2.0, 2.0))
# The paper's "other specification" (test.py, panel d): superellipses (x-cx)^4 + (y-cy)^4 >= 0.2^4, moved.
MOVED_OBSTACLES = dict(centers=((-0.1, -1.1), (0.8, 0.1)), radii=(0.2, 0.2), gains=(20.0, 20.0), powers=(4.0, 4.0))


def paper_obstacles() -> Obstacles:
  """The two discs the variants are trained and verified with: centers (2, 2), radii/gains/powers (2,)."""
  return Obstacles.create(**PAPER_OBSTACLES)


def moved_obstacles() -> Obstacles:
  """The moved superellipses (power 4) passed at inference, without retraining, by `verify`, plots and demo."""
  return Obstacles.create(**MOVED_OBSTACLES)
