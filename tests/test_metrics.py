"""zoo.metrics: trajectory distances against `similaritymeasures` and the official ELCD definition."""

import math

import numpy as np
import pytest
import similaritymeasures as sm

from zoo import metrics


def random_curves(seed, n, m, dim=2):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, dim)).cumsum(0), rng.normal(size=(m, dim)).cumsum(0)


CASES = [(0, 50, 50), (1, 40, 7), (2, 3, 90), (3, 200, 185), (4, 2, 2), (5, 1, 12)]


@pytest.mark.parametrize("seed,n,m", CASES)
@pytest.mark.parametrize("dim", [1, 2, 3, 8])
def test_dtw_and_frechet_match_similaritymeasures(seed, n, m, dim):
  a, b = random_curves(seed, n, m, dim)
  assert metrics.dtw(a, b) == pytest.approx(sm.dtw(a, b)[0], rel=1e-12, abs=1e-12)
  assert metrics.frechet(a, b) == pytest.approx(sm.frechet_dist(a, b), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed,n,m", [c for c in CASES if min(c[1:]) >= 2])
def test_swept_error_area_matches_similaritymeasures(seed, n, m):
  a, b = random_curves(seed, n, m)
  want = sm.area_between_two_curves(a.copy(), b.copy())
  assert metrics.swept_error_area(a, b) == pytest.approx(want, rel=1e-10)
  assert metrics.swept_error_area(b, a) == pytest.approx(want, rel=1e-10)


def test_swept_error_area_of_stacked_pairs_is_the_sum():
  a, b = random_curves(7, 60, 45, dim=4)
  want = sm.area_between_two_curves(a[:, :2].copy(), b[:, :2].copy()) + \
      sm.area_between_two_curves(a[:, 2:].copy(), b[:, 2:].copy())
  assert metrics.swept_error_area(a, b) == pytest.approx(want, rel=1e-10)
  with pytest.raises(ValueError):
    metrics.swept_error_area(a[:, :3], b[:, :3])


def test_hand_worked_values():
  # Two parallel unit-spaced segments one apart: area 2 (a 2×1 strip), DTW 3 (three aligned pairs), Fréchet 1.
  a = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
  b = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
  assert metrics.swept_error_area(a, b) == pytest.approx(2.0)
  assert metrics.dtw(a, b) == pytest.approx(3.0)
  assert metrics.frechet(a, b) == pytest.approx(1.0)
  assert metrics.dtw(a, a) == metrics.frechet(a, a) == metrics.swept_error_area(a, a) == 0.0


def official_dtwd(traj, reference):
  """The official utils.dtwd_np, restated: mean over reference of the min over traj + mean over traj of the
  min over reference (double loop of Euclidean distances)."""
  dists = np.array([[np.linalg.norm(p - q) for q in reference] for p in traj])
  return np.mean(np.min(dists, axis=0)) + np.mean(np.min(dists, axis=1))


def test_mean_nearest_distance_is_the_official_dtwd():
  # Hand-worked: a = (0,0), (1,0); b = (0,1). Distances [[1], [√2]]. b's nearest: 1 (mean 1);
  # a's nearest: 1 and √2 (mean (1 + √2)/2). The official metric is the SUM: 1 + (1 + √2)/2.
  a, b = np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0]])
  assert metrics.mean_nearest_distance(a, b) == pytest.approx(1 + (1 + math.sqrt(2)) / 2, rel=1e-15)
  assert metrics.mean_nearest_distance(b, a) == pytest.approx(1 + (1 + math.sqrt(2)) / 2, rel=1e-15)
  for seed, n, m in CASES[:4]:
    x, y = random_curves(seed, n, m, dim=4)
    assert metrics.mean_nearest_distance(x, y) == pytest.approx(official_dtwd(x, y), rel=1e-12)
  # Not DTW: time order does not matter.
  x, y = random_curves(9, 30, 30)
  assert metrics.mean_nearest_distance(x[::-1], y) == pytest.approx(metrics.mean_nearest_distance(x, y))
  assert metrics.dtw(x[::-1], y) != pytest.approx(metrics.dtw(x, y))


def test_trajectory_metrics_average_over_pairs():
  a1, b1 = random_curves(0, 30, 20)
  a2, b2 = random_curves(1, 25, 25)
  out = metrics.trajectory_metrics([a1, a2], [b1, b2])
  assert set(out) == set(metrics.TRAJECTORY_METRICS)
  assert out["dtw"] == pytest.approx((metrics.dtw(a1, b1) + metrics.dtw(a2, b2)) / 2)
  with pytest.raises(ValueError):
    metrics.trajectory_metrics([a1], [b1, b2])


def test_shape_errors():
  with pytest.raises(ValueError, match="same dim"):
    metrics.dtw(np.zeros((3, 2)), np.zeros((3, 3)))
  with pytest.raises(ValueError):
    metrics.frechet(np.zeros(3), np.zeros(3))


def test_mean_std():
  assert metrics.mean_std([1.0, 2.0, 3.0]) == f"2 ± {np.std([1.0, 2.0, 3.0]):.3g}"
  assert metrics.mean_std([1.0, 2.0, 3.0], ddof=1) == "2 ± 1"
  assert metrics.mean_std([0.5]) == "0.5 ± 0"
  with pytest.raises(ValueError):
    metrics.mean_std([])
