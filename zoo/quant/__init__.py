"""Clustering-aware quantization of any zoo model: DKM, IDKM, IDKM-JFB, and compact b-bit storage.

    import zoo
    model = zoo.load("resnet18-digits")
    zoo.quantize(model, method="idkm", bits=2, dim=1, tau=1e-4, iters=5)  # wraps the chosen layers in place
    ...train as usual (model.train(): soft weights W̃ = A·C; model.eval(): hard snap to the codebook)...
    zoo.quant.export(model)        # in place: b-bit packed indices + 2^b×d codebook per layer (uint8 + float)
    zoo.quant.materialize(model)   # in place: plain layers whose kernels are the snapped weights

Module surgery, three forms of a layer with a `kernel` (nnx.Conv, nnx.Linear, ...):
  float          `layer`                                   kernel: nnx.Param
  training       `ClusteredLayer(layer)`                   + codebook: Codebook, ready: ClusterReady
  export         `PackedLayer(layer without its kernel)`   indices: PackedIndices (uint8), codebook: Codebook
The wrapped layer keeps its own code and remaining parameters (bias); the wrappers call it on the soft /
snapped / decoded kernel. Codebooks are `Codebook` variables, not `nnx.Param`: the optimizer
(`wrt=nnx.Param`) leaves them alone; the training forward writes the new centroids into them (the warm start
of the next step, as coremltools keeps its centroids between steps). An exported model's `nnx.state` holds
uint8 packed indices and float codebooks, so orbax stores the compact form, and restoring into a model built
in export form gives the snapped weights exactly.

Layer choice follows coremltools: every layer whose kernel has at least `min_size` = 2048 elements
(`weight_threshold`), or the layers named by `layers` (wildcards on paths like "stages/1/blocks/0/conv1").
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn import init as init_lib
from zoo.quant import kmeans, packing
from zoo.quant.kmeans import METHODS, KMeansConfig

__all__ = [
    "quantize", "export", "materialize", "transfer", "QuantSpec", "ClusteredLayer", "PackedLayer", "Codebook",
    "PackedIndices", "ClusterReady", "clustered_layers", "effective_kernel", "distinct_vectors", "check_distinct",
    "storage_bytes", "state_bytes", "kmeans", "packing", "METHODS",
]

MIN_SIZE = 2048  # coremltools `weight_threshold`: smaller kernels stay float


class Codebook(nnx.Variable):
  """The k×d centroids (look-up table) of one clustered layer. Not an `nnx.Param`: not touched by the
  optimizer; the training forward pass overwrites it with the latest clustering (warm start)."""


class PackedIndices(nnx.Variable):
  """A layer's cluster indices, b bits each, packed little-endian into uint8 (see `zoo.quant.packing`)."""


class ClusterReady(nnx.Variable):
  """Whether the codebook holds a clustering yet (False: k-means++ / Lloyd initialises it at first use)."""


@dataclasses.dataclass(frozen=True)
class QuantSpec:
  """How one layer is clustered: k = 2^bits centroids of dimension `dim`, and the DKM settings (see
  `kmeans.KMeansConfig`). `seed` seeds the k-means++ initialisation."""

  method: str = "idkm"
  bits: int = 4
  dim: int = 1
  tau: float = 1e-4
  iters: int = 5
  eps: float = 1e-4
  adjoint_iters: int | None = None
  adjoint_tol: float = 1e-6
  seed: int = 0

  def __post_init__(self):
    if not 1 <= self.bits <= packing.MAX_BITS:
      raise ValueError(f"bits must be in 1..{packing.MAX_BITS}, got {self.bits}.")
    if self.dim < 1:
      raise ValueError(f"dim must be >= 1, got {self.dim}.")
    self.kmeans_config()  # validates method, tau, iters

  @property
  def k(self) -> int:
    return 2 ** self.bits

  def kmeans_config(self) -> KMeansConfig:
    return KMeansConfig(method=self.method, tau=self.tau, iters=self.iters, eps=self.eps,
                        adjoint_iters=self.adjoint_iters, adjoint_tol=self.adjoint_tol)


def call_with_kernel(layer: nnx.Module, kernel: jax.Array, *args: Any, **kwargs: Any) -> Any:
  """`layer(*args)` computed with `kernel` as its kernel, on a copy: `layer` itself is not modified."""
  graphdef, state = nnx.split(layer)
  twin = nnx.merge(graphdef, state, copy=True)
  twin.kernel = nnx.Param(kernel)
  return twin(*args, **kwargs)


class ClusteredLayer(nnx.Module):
  """A layer trained clustering-aware: in training mode its kernel K is replaced by the soft weights
  W̃ = A(C, W)·C of a differentiable k-means of its weight vectors W (DKM / IDKM / IDKM-JFB); in eval mode by
  the hard snap of W to the codebook C (≤ 2^b distinct vectors).

  Arguments:
    layer: a module with a `kernel` nnx.Param of shape (..., out), out divisible by spec.dim.
    spec: the clustering settings.
  Call: as the wrapped layer.
  """

  def __init__(self, layer: nnx.Module, spec: QuantSpec):
    kernel = layer.kernel
    packing.vectors(jnp.zeros((1, kernel.shape[-1])), spec.dim)  # validates the output width
    self.layer = layer
    self.spec = spec
    self.deterministic = False  # nnx.Module.train()/eval() set it: False = soft weights, True = hard snap
    self.codebook = Codebook(jnp.zeros((spec.k, spec.dim), kernel.dtype))
    self.ready = ClusterReady(jnp.asarray(False))

  def vectors(self) -> jax.Array:
    """The float kernel as weight vectors, (m, d)."""
    return packing.vectors(self.layer.kernel[...], self.spec.dim)

  def current_codebook(self) -> jax.Array:
    """The codebook, or (before the first clustering) k-means++ + Lloyd on the current weights. (k, d)."""
    if init_lib.shapes_only():  # an abstract build: the initial codebook's values do not matter
      return self.codebook[...]
    w = jax.lax.stop_gradient(self.vectors())
    ready = self.ready[...]
    init = lambda: kmeans.init_centroids(jax.random.key(self.spec.seed), w, self.spec.k).astype(w.dtype)
    if isinstance(ready, jax.core.Tracer):
      return jax.lax.cond(ready, lambda: self.codebook[...], init)
    return self.codebook[...] if bool(ready) else init()  # concrete (eager): no cond to compile

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    kernel = self.layer.kernel[...]
    c0 = self.current_codebook()
    if self.deterministic:
      weights = kmeans.snap(c0, self.vectors())
    else:
      weights, c = kmeans.cluster(c0, self.vectors(), self.spec.kmeans_config())
      self.codebook[...] = jax.lax.stop_gradient(c)
      self.ready[...] = jnp.asarray(True)
    return call_with_kernel(self.layer, weights.reshape(kernel.shape), *args, **kwargs)


class PackedLayer(nnx.Module):
  """The export form of a clustered layer: b-bit packed indices and a 2^b×d codebook instead of a kernel.

  Arguments:
    layer: the wrapped module, its `kernel` removed. indices: (⌈m·b/8⌉,) uint8. codebook: (2^b, d).
    shape: the kernel's shape. bits: b.
  Call: as the wrapped layer, with kernel = codebook[unpack(indices)].reshape(shape).
  """

  def __init__(self, layer: nnx.Module, indices: jax.Array, codebook: jax.Array, shape: Sequence[int], bits: int):
    if hasattr(layer, "kernel"):
      raise ValueError("PackedLayer takes the layer without its kernel (the indices and codebook replace it).")
    self.layer = layer
    self.shape = tuple(int(s) for s in shape)
    self.bits = int(bits)
    self.indices = PackedIndices(jnp.asarray(indices, jnp.uint8))
    self.codebook = Codebook(jnp.asarray(codebook))

  def kernel(self) -> jax.Array:
    """The snapped kernel, `shape`."""
    return packing.decode(self.indices[...], self.codebook[...], self.shape, self.bits)

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    return call_with_kernel(self.layer, self.kernel(), *args, **kwargs)


# --- module surgery --------------------------------------------------------------------------------


def _path_str(path: Sequence[Any]) -> str:
  return "/".join(str(p) for p in path)


def get_path(root: Any, path: Sequence[Any]) -> Any:
  node = root
  for p in path:
    node = node[p] if isinstance(p, int) else getattr(node, p)
  return node


def set_path(root: Any, path: Sequence[Any], value: Any) -> None:
  if not path:
    raise ValueError("cannot replace the root module; wrap a model that contains the layer.")
  parent = get_path(root, path[:-1])
  if isinstance(path[-1], int):
    parent[path[-1]] = value
  else:
    setattr(parent, path[-1], value)


def _wrapped(module: nnx.Module) -> bool:
  return isinstance(module, (ClusteredLayer, PackedLayer))


def _has_kernel(module: nnx.Module) -> bool:
  return isinstance(getattr(module, "kernel", None), nnx.Param) and not _wrapped(module)


def _candidates(model: nnx.Module) -> list[tuple[tuple, nnx.Module]]:
  """(path, module) of every module with an nnx.Param `kernel`, outside existing wrappers."""
  inside = [p for p, m in nnx.iter_modules(model) if _wrapped(m)]
  out = []
  for path, module in nnx.iter_modules(model):
    if path and _has_kernel(module) and not any(path[: len(w)] == w for w in inside):
      out.append((path, module))
  return out


def _wrappers(model: nnx.Module) -> list[tuple[tuple, ClusteredLayer | PackedLayer]]:
  return [(tuple(p), m) for p, m in nnx.iter_modules(model) if _wrapped(m)]


def clustered_layers(model: nnx.Module) -> list[tuple[str, ClusteredLayer | PackedLayer]]:
  """Every clustered layer of `model` (training or export form) as (path "a/0/b", wrapper)."""
  return [(_path_str(p), m) for p, m in _wrappers(model)]


def quantize(model: nnx.Module, method: str = "idkm", bits: int = 4, dim: int = 1, tau: float = 1e-4,
             iters: int = 5, layers: Sequence[str] | Callable[[str, nnx.Module], bool] | None = None,
             min_size: int = MIN_SIZE, eps: float = 1e-4, adjoint_iters: int | None = None,
             adjoint_tol: float = 1e-6, seed: int = 0) -> nnx.Module:
  """Wraps the chosen layers of `model` in place for clustering-aware training; returns `model`.

  Arguments:
    model: any NNX module. method: "dkm" | "idkm" | "idkm-jfb". bits: b (k = 2^b centroids per layer).
    dim: d, the dimension of the clustered weight vectors (d consecutive output channels).
    tau, iters, eps, adjoint_iters, adjoint_tol: see `kmeans.KMeansConfig`.
    layers: None (every kernel with ≥ min_size elements and an output width divisible by d), wildcard
      patterns on layer paths ("stages/*/blocks/*/conv*"), or a predicate `(path, module) -> bool`.
    seed: k-means++ seed (layer i uses seed + i).
  Returns:
    `model`, its chosen layers replaced by `ClusteredLayer`s (codebooks initialised at first use).
  """
  chosen = []
  for path, module in _candidates(model):
    name = _path_str(path)
    if layers is None:
      pick = module.kernel.size >= min_size and module.kernel.shape[-1] % dim == 0
    elif callable(layers):
      pick = bool(layers(name, module))
    else:
      pick = any(fnmatch.fnmatchcase(name, pat) for pat in layers)
    if pick:
      chosen.append((path, module))
  if not chosen:
    raise ValueError(
        f"quantize found no layer to cluster (layers={layers!r}, min_size={min_size}, dim={dim}). Layers with a "
        f"kernel: {[_path_str(p) for p, _ in _candidates(model)] or 'none'}.")
  for i, (path, module) in enumerate(chosen):
    spec = QuantSpec(method=method, bits=bits, dim=dim, tau=tau, iters=iters, eps=eps,
                     adjoint_iters=adjoint_iters, adjoint_tol=adjoint_tol, seed=seed + i)
    set_path(model, path, ClusteredLayer(module, spec))
  return model


def export(model: nnx.Module) -> nnx.Module:
  """Replaces every `ClusteredLayer` of `model` (in place) by its `PackedLayer`: weights snapped to the
  codebook, indices packed to b bits. Works under `nnx.eval_shape`. Returns `model`."""
  for path, wrapper in _wrappers(model):
    if not isinstance(wrapper, ClusteredLayer):
      continue
    spec = wrapper.spec
    codebook = wrapper.current_codebook()
    kernel = wrapper.layer.kernel[...]
    indices = packing.encode(kernel, codebook, spec.bits)
    layer = wrapper.layer
    del layer.kernel
    set_path(model, path, PackedLayer(layer, indices, codebook, kernel.shape, spec.bits))
  return model


def effective_kernel(wrapper: ClusteredLayer | PackedLayer) -> jax.Array:
  """The kernel the layer computes with at inference: decoded (export form) or snapped (training form)."""
  if isinstance(wrapper, PackedLayer):
    return wrapper.kernel()
  shape = wrapper.layer.kernel.shape
  return kmeans.snap(wrapper.current_codebook(), wrapper.vectors()).reshape(shape)


def materialize(model: nnx.Module) -> nnx.Module:
  """Replaces every clustered layer (in place) by the plain layer with its snapped kernel as an nnx.Param:
  the original architecture and state paths, ≤ 2^b distinct weight vectors per layer. Returns `model`."""
  for path, wrapper in _wrappers(model):
    kernel = effective_kernel(wrapper)
    layer = wrapper.layer
    layer.kernel = nnx.Param(kernel)
    set_path(model, path, layer)
  return model


def _normalised_paths(model: nnx.Module) -> dict[tuple, nnx.Variable]:
  """Variables of `model` by path, with the wrappers' `layer` step removed (the float model's paths)."""
  wrappers = [p for p, m in nnx.iter_modules(model) if _wrapped(m)]
  out = {}
  for path, node in nnx.iter_graph(model):
    if not isinstance(node, nnx.Variable):
      continue
    for w in wrappers:
      if path[: len(w)] == w and len(path) > len(w) and path[len(w)] == "layer":
        path = w + path[len(w) + 1:]
        break
    out[tuple(path)] = node
  return out


def transfer(source: nnx.Module, target: nnx.Module) -> list[str]:
  """Copies every variable of `source` into `target` where the paths (looking through clustering wrappers)
  and shapes agree, e.g. a float model's weights into its quantized version. Clustered layers whose kernel
  was copied get their codebook re-initialised (k-means on the new weights at first use). Returns the
  copied paths."""
  src, dst = _normalised_paths(source), _normalised_paths(target)
  copied = []
  for path, var in src.items():
    t = dst.get(path)
    if t is None or type(t) is not type(var):
      continue
    value = var.get_value()
    if np.shape(value) != np.shape(t.get_value()) or value.dtype != t.get_value().dtype:  # (PRNG key dtypes too)
      continue
    t.set_value(value)
    copied.append(_path_str(path))
  for _, wrapper in clustered_layers(target):
    if isinstance(wrapper, ClusteredLayer):
      wrapper.ready[...] = jnp.asarray(False)
  return copied


# --- guarantees and storage ------------------------------------------------------------------------


def distinct_vectors(wrapper: ClusteredLayer | PackedLayer) -> int:
  """Number of distinct d-dimensional weight vectors of the layer's inference kernel."""
  dim = wrapper.codebook.shape[1]
  rows = np.asarray(effective_kernel(wrapper)).reshape(-1, dim)
  return int(np.unique(rows, axis=0).shape[0])


def check_distinct(model: nnx.Module) -> Any:
  """`Check`: every clustered layer computes with at most 2^b distinct weight vectors."""
  from zoo.registry import Check  # pylint: disable=import-outside-toplevel

  layers = clustered_layers(model)
  if not layers:
    return Check("clustered layers with ≤ 2^b distinct weight vectors", False, 0.0, 1.0,
                 "the model has no clustered layer")
  worst, detail = 0.0, ""
  for path, wrapper in layers:
    bits = wrapper.bits if isinstance(wrapper, PackedLayer) else wrapper.spec.bits
    n = distinct_vectors(wrapper)
    if n / 2 ** bits >= worst:
      worst, detail = n / 2 ** bits, f"worst {path}: {n} distinct vectors, 2^{bits} = {2 ** bits} allowed"
  return Check("distinct weight vectors / 2^b, worst clustered layer", worst <= 1.0, worst, 1.0,
               f"{len(layers)} clustered layers; {detail}")


def state_bytes(model: nnx.Module) -> int:
  """Bytes of every array in the module's state (PRNG keys excluded: they are not weights)."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(nnx.state(model))
             if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))


def storage_bytes(model: nnx.Module) -> dict[str, int]:
  """Bytes of the model's state as stored, and as float32 (clustered kernels as float32 weights).

  Returns:
    {"state": bytes of every state array, "float32": the same with every clustered layer stored as a float32
    kernel instead, "clustered_weights": number of weights in clustered layers}.
  """
  state = state_bytes(model)
  float32 = state
  weights = 0
  for _, wrapper in clustered_layers(model):
    shape = wrapper.shape if isinstance(wrapper, PackedLayer) else wrapper.layer.kernel.shape
    n = math.prod(shape)
    weights += n
    own = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
              for x in jax.tree.leaves(nnx.state(wrapper, PackedIndices, Codebook, ClusterReady)))
    kernel_now = 0 if isinstance(wrapper, PackedLayer) else n * np.dtype(wrapper.layer.kernel.dtype).itemsize
    float32 += 4 * n - own - kernel_now
  return {"state": state, "float32": float32, "clustered_weights": weights}
