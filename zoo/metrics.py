"""Task metrics. Trajectory distances between a reproduced curve and a demonstration (numpy, float64).

Each trajectory metric takes two curves `a: (n, dim)` and `b: (m, dim)` (rows are points in time order; the
lengths may differ) and returns a float:

  * `mean_nearest_distance`: the ELCD paper's "DTW distance" (its official `utils.dtwd_np`), which is not
    dynamic time warping but a symmetric mean nearest-point (chamfer) distance.
  * `dtw`: dynamic time warping with Euclidean point distances (as `similaritymeasures.dtw`).
  * `frechet`: discrete Fréchet distance (as `similaritymeasures.frechet_dist`).
  * `swept_error_area`: area between the curves (as `similaritymeasures.area_between_two_curves`).

`mean_std` formats "mean ± std" over seeds.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def _curves(a, b) -> tuple[np.ndarray, np.ndarray]:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 1 or len(b) < 1:
    raise ValueError(f"Curves must be (n, dim) and (m, dim) with the same dim and n, m >= 1; got {a.shape} "
                     f"and {b.shape}.")
  return a, b


def pairwise_distances(a, b) -> np.ndarray:
  """Euclidean distances between the points of `a: (n, dim)` and `b: (m, dim)`; returns (n, m)."""
  from scipy.spatial import distance  # pylint: disable=import-outside-toplevel

  a, b = _curves(a, b)
  return distance.cdist(a, b, "euclidean")


def mean_nearest_distance(a, b) -> float:
  """Symmetric mean nearest-point (chamfer) distance: the ELCD paper's "DTW distance".

      D(a, b) = (1/m) Σ_j min_i ‖a_i − b_j‖ + (1/n) Σ_i min_j ‖a_i − b_j‖

  The SUM of the two directed mean nearest-point distances (Euclidean, not squared), exactly the official
  `utils.dtwd_np(traj, reference)` of Jaffe et al., NeurIPS 2024 (seanjaffe1/Extended-Linearized-
  Contracting-Dynamics), which the paper reports as "DTW". Symmetric in (a, b); ignores time order.

  Arguments:
    a: (n, dim) curve. b: (m, dim) curve.

  Returns:
    float, >= 0.
  """
  d = pairwise_distances(a, b)
  return float(np.mean(d.min(axis=0)) + np.mean(d.min(axis=1)))


def _antidiagonal_dp(c: np.ndarray, frechet: bool) -> float:
  """The DTW (sum) or discrete Fréchet (max) recursion on the cost matrix `c: (n, m)`, one anti-diagonal at a
  time (vectorised; the same floating-point operations as the cell-by-cell recursion)."""
  n, m = c.shape
  d = np.empty_like(c)
  if frechet:
    d[:, 0] = np.maximum.accumulate(c[:, 0])
    d[0, :] = np.maximum.accumulate(c[0, :])
  else:
    d[:, 0] = np.cumsum(c[:, 0])
    d[0, :] = np.cumsum(c[0, :])
  for k in range(2, n + m - 1):  # cells (i, j), i + j = k, i, j >= 1
    i = np.arange(max(1, k - m + 1), min(k - 1, n - 1) + 1)
    if i.size == 0:
      continue
    j = k - i
    best = np.minimum(np.minimum(d[i - 1, j], d[i, j - 1]), d[i - 1, j - 1])
    d[i, j] = np.maximum(best, c[i, j]) if frechet else c[i, j] + best
  return float(d[-1, -1])


def dtw(a, b) -> float:
  """Dynamic time warping distance with Euclidean point distances.

      DTW(a, b) = min over monotone alignments π of Σ_{(i, j) ∈ π} ‖a_i − b_j‖

  by the recursion D[i, j] = ‖a_i − b_j‖ + min(D[i−1, j], D[i, j−1], D[i−1, j−1]) (Sakoe & Chiba 1978;
  the same value as `similaritymeasures.dtw(a, b)[0]`). Not normalised by length (CONDOR divides by it).

  Arguments:
    a: (n, dim) curve. b: (m, dim) curve.

  Returns:
    float, >= 0.
  """
  return _antidiagonal_dp(pairwise_distances(a, b), frechet=False)


def frechet(a, b) -> float:
  """Discrete Fréchet distance (Eiter & Mannila 1994), Euclidean.

      F[i, j] = max(min(F[i−1, j], F[i, j−1], F[i−1, j−1]), ‖a_i − b_j‖),   frechet = F[n−1, m−1]

  the same value as `similaritymeasures.frechet_dist(a, b)`.

  Arguments:
    a: (n, dim) curve. b: (m, dim) curve.

  Returns:
    float, >= 0.
  """
  return _antidiagonal_dp(pairwise_distances(a, b), frechet=True)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _is_simple(q: np.ndarray) -> np.ndarray:
  """Whether each quadrilateral `q: (k, 4, 2)` (vertices in order) is simple, by the majority sign of the
  cross products of consecutive edges (similaritymeasures.is_simple_quad)."""
  edges = np.roll(q, -1, axis=1) - q  # AB, BC, CD, DA
  cross = _cross(edges, np.roll(edges, -1, axis=1))  # AB×BC, BC×CD, CD×DA, DA×AB
  pos, neg = (cross > 0).sum(1), (cross < 0).sum(1)
  agree = np.where((pos < neg)[:, None], cross <= 0, cross >= 0)
  return agree.sum(1) > 2


def _shoelace(q: np.ndarray) -> np.ndarray:
  x, y = q[..., 0], q[..., 1]
  return 0.5 * np.abs(np.sum(x * np.roll(y, 1, axis=1), axis=1) - np.sum(y * np.roll(x, 1, axis=1), axis=1))


def _densify(curve: np.ndarray, length: int) -> np.ndarray:
  """Inserts points into `curve: (m, 2)` until it has `length` points: each time at the middle (in x, the
  y linearly interpolated) of the currently longest segment, the first one on ties (Jekel et al. 2018)."""
  curve = curve.copy()
  arcs = np.sqrt(np.sum((curve[1:] - curve[:-1]) ** 2, axis=1))
  while len(curve) < length:
    k = int(np.argmax(arcs))
    (x0, y0), (x1, y1) = curve[k], curve[k + 1]
    new_x = (x1 + x0) / 2.0
    new_y = np.interp(new_x, [x0, x1], [y0, y1]) if x0 < x1 else np.interp(new_x, [x1, x0], [y1, y0])
    curve = np.insert(curve, k + 1, [new_x, new_y], axis=0)
    pieces = np.sqrt(np.sum((curve[k + 1:k + 3] - curve[k:k + 2]) ** 2, axis=1))
    arcs = np.concatenate([arcs[:k], pieces, arcs[k + 1:]])
  return curve


def _area_2d(a: np.ndarray, b: np.ndarray) -> float:
  longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
  shorter = _densify(shorter, len(longer))
  # Quadrilateral i: longer[i-1], longer[i], shorter[i], shorter[i-1].
  q = np.stack([longer[:-1], longer[1:], shorter[1:], shorter[:-1]], axis=1)
  swapped = q[:, [1, 0, 2, 3]]
  rotated = q[:, [0, 2, 1, 3]]
  simple, simple_swapped = _is_simple(q), _is_simple(swapped)
  q = np.where(simple[:, None, None], q, np.where(simple_swapped[:, None, None], swapped, rotated))
  return float(np.sum(_shoelace(q)))


def swept_error_area(a, b) -> float:
  """Area between two planar curves (the "swept error area"), Jekel et al.'s quadrilateral algorithm.

  The shorter curve is densified to the longer one's length (repeatedly bisecting its longest segment), then
  the areas of the quadrilaterals (a_{i−1}, a_i, b_i, b_{i−1}) are summed, each made simple by reordering
  its vertices when it self-intersects: exactly `similaritymeasures.area_between_two_curves` (Jekel, Venter,
  Venter, Stander, Haftka, Int. J. Material Forming 2018). For two time-aligned curves of equal length this is
  the swept error area of Khansari-Zadeh & Billard (2014) as used by ImitationFlow (Urain et al. 2020).
  Curves of dim 2k (the stacked 4D / 8D LASA) give the sum over the k coordinate pairs (0, 1), (2, 3), ....

  Arguments:
    a: (n, 2k) curve, n >= 2. b: (m, 2k) curve, m >= 2.

  Returns:
    float, >= 0 (units of position squared).
  """
  a, b = _curves(a, b)
  if a.shape[1] % 2 or len(a) < 2 or len(b) < 2:
    raise ValueError(f"swept_error_area needs curves of >= 2 points in an even dimension; got {a.shape}, {b.shape}.")
  return float(sum(_area_2d(a[:, p:p + 2], b[:, p:p + 2]) for p in range(0, a.shape[1], 2)))


TRAJECTORY_METRICS = {
    "mean_nearest_distance": mean_nearest_distance,
    "dtw": dtw,
    "frechet": frechet,
    "swept_error_area": swept_error_area,
}


def trajectory_metrics(predictions: Sequence[np.ndarray], references: Sequence[np.ndarray],
                       names: Iterable[str] = tuple(TRAJECTORY_METRICS)) -> dict[str, float]:
  """Each metric averaged over pairs (prediction k, reference k), e.g. rollouts vs demonstrations.

  Arguments:
    predictions: K curves (n_k, dim) (lengths may differ). references: K curves (m_k, dim), e.g. (K, T, dim).
    names: which of `TRAJECTORY_METRICS`.

  Returns:
    {name: mean over the K pairs}.
  """
  if len(predictions) != len(references) or not len(predictions):
    raise ValueError(f"Need as many predictions as references (>= 1); got {len(predictions)} and "
                     f"{len(references)}.")
  return {n: float(np.mean([TRAJECTORY_METRICS[n](p, r) for p, r in zip(predictions, references)]))
          for n in names}


def mean_std(values: Iterable[float], digits: int = 3, ddof: int = 0) -> str:
  """"mean ± std" of `values` (e.g. one metric over seeds), `digits` significant digits; std with `ddof`
  (0: numpy's default, as the paper's tables). One value gives "mean ± 0"."""
  v = np.asarray(list(values), np.float64)
  if v.size == 0:
    raise ValueError("mean_std of no values")
  std = float(v.std(ddof=ddof)) if v.size > ddof else 0.0
  return f"{float(v.mean()):.{digits}g} ± {std:.{digits}g}"
