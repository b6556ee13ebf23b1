"""nnx-zoo: Flax NNX models with structural guarantees, and a checkpoint hub.

    import zoo
    zoo.list_models("elcd*")                 # registered variants (wildcards; pretrained=True)
    model = zoo.load("elcd-lasa8d")          # checkpoints/ -> HF cache -> Hub, verified by sha256
    model = zoo.load("hf://ORG/REPO@REV")    # any zoo checkpoint on the Hub
    model = zoo.create("massnet-sir", seed=0, hidden=20)   # random init, keyword overrides
    zoo.info("massnet-sir"); zoo.verify(model, "massnet-sir"); zoo.push_to_hub(model, repo_id="ORG/NAME")
"""

from __future__ import annotations

from typing import Any

from zoo import errors
from zoo.registry import Check, Provenance, get_spec, list_models, provenance

# `import zoo` stays as cheap as numpy: JAX, Flax, orbax and huggingface_hub are imported on first use of what
# needs them (zoo.load, zoo.create, zoo.push_to_hub come from zoo.hub when first touched).
_LAZY = {"load": "zoo.hub", "create": "zoo.hub", "push_to_hub": "zoo.hub"}


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    import importlib  # pylint: disable=import-outside-toplevel
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted({*globals(), *_LAZY})

__all__ = ["load", "create", "list_models", "info", "verify", "push_to_hub", "quantize", "provenance", "errors",
           "Check", "Provenance"]
__version__ = "0.1.0"


def info(name: str) -> dict[str, Any]:
  """The spec of `name`: family, input_shape of one example, dataset, guarantee, pretrained reference, and the
  metrics and checks measured on the embedded checkpoint (when it ships one)."""
  import json  # pylint: disable=import-outside-toplevel

  from zoo import cache, registry  # pylint: disable=import-outside-toplevel

  out = registry.record(name)  # from the registry's index: no model code imported
  manifest = cache.checkpoints_dir() / name / "manifest.json"
  if manifest.is_file():
    m = json.loads(manifest.read_text())
    out.update(embedded=str(manifest.parent), metrics=m.get("metrics"), checks=m.get("checks"),
               num_params=m.get("num_params"),
               eval_split=(m.get("config") or {}).get("eval_split", "test"))
  return out


def verify(model: Any, name: str | None = None, measure: bool = True) -> list[Check]:
  """Checks the model's structural guarantee on its weights (the family's `verify`) and, with `measure`, what the
  family measures by running the model (its `measure` hook, e.g. an RL policy's violation rate over episodes;
  minutes, and the family's optional extra)."""
  from zoo import cache  # pylint: disable=import-outside-toplevel

  cache.enable_compilation_cache()
  if name is None:
    origin = provenance(model)
    if origin is None:
      raise ValueError("verify needs name= for a module not made by zoo.create / zoo.load.")
    name = origin.name
  spec = get_spec(name)
  with spec.family.precision():
    checks = list(spec.family.verify(model))
    if measure and spec.family.measure is not None:
      checks += list(spec.family.measure(model))
    return checks


def quantize(model: Any, method: str = "idkm", bits: int = 4, dim: int = 1, tau: float = 1e-4, iters: int = 5,
             **kwargs: Any) -> Any:
  """Quantizes `model` in place and returns it.

  method "dkm" | "idkm" | "idkm-jfb": wraps the layers for clustering-aware training with k = 2^bits centroids of
    d-dim weight vectors (see `zoo.quant.quantize`; `zoo.quant.export` packs for shipping).
  method "rotate-rtn4" | "rtn4": post-training QuaRot-style quantization of a model with a `rotation_plan`
    (randomised Hadamard rotations folded in, then 4-bit round-to-nearest weights and activations; "rtn4" without
    rotation; keywords w_bits, a_bits, seed, clip; see `zoo.quant.rotate`). The result is the compact form that
    `zoo.checkpoint.save` / `zoo.push_to_hub` store (packed 4-bit codes + scales) and `zoo.load` restores.
  """
  from zoo import quant, registry  # pylint: disable=import-outside-toplevel
  from zoo.quant import rotate  # pylint: disable=import-outside-toplevel

  if method in (rotate.METHOD, "rtn4"):
    rotate.quantize_model(model, method, **kwargs)
    origin = provenance(model)
    if origin is not None:  # save / push rebuild the quantized form from the module's own recipe
      registry.set_provenance(model, origin.with_kwargs(**rotate.rebuild_kwargs(model)))
    return model
  return quant.quantize(model, method=method, bits=bits, dim=dim, tau=tau, iters=iters, **kwargs)
