"""One run over many processes (JAX's multi-controller runtime): start-up, which rows each process reads,
process-0-only work, and a bounded end when a peer dies.

Every process runs the same program on its own devices; `jax.distributed.initialize` joins them into one
global device list, and a jitted step over a global mesh runs as one SPMD program (gloo collectives on CPU, NCCL on
GPU, ICI/DCN on TPU). The trainer uses this module as:

    initialize(...)                 # before any JAX computation; no-op for a single process
    rows = local_rows(sharding, n)  # the global batch rows this process reads and feeds
    is_primary()                    # process 0 writes logs, metrics, the export, the card and plots
    broadcast_json(obj)             # process 0's evaluation metrics, the same on every process
    local_copy(tree)                # a replicated global array -> this process's own single-device copy
    barrier(name)                   # bounded wait for every process (distributed key-value barrier)

A process that dies (kill -9, a lost host) is noticed by the others through the coordination service's
heartbeats (`heartbeat_timeout_s`) or at once through a broken collective connection; they then exit non-zero
(see `train.__main__`), and relaunching every process resumes from the latest checkpoint.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from absl import logging

# The environment variables read when a flag is not given (JAX itself reads JAX_COORDINATOR_ADDRESS).
ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def _int_env(name: str) -> int | None:
  value = os.environ.get(name, "").strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError as e:
    raise ValueError(f"${name}={value!r} is not an integer.") from e


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False, heartbeat_timeout_s: int = 100,
               initialization_timeout_s: int = 300) -> bool:
  """Joins this process to a multi-process run; returns whether it did (False: a plain single-process run).

  Arguments:
    coordinator_address: "HOST:PORT" of process 0's coordination service (default `$JAX_COORDINATOR_ADDRESS`).
    num_processes: how many processes the run has (default `$JAX_NUM_PROCESSES`).
    process_id: this process's index in [0, num_processes) (default `$JAX_PROCESS_ID`).
    auto: call `jax.distributed.initialize()` even when none of the above is set, letting JAX detect the cluster
      (Cloud TPU pod slices, SLURM, Open MPI, Kubernetes JobSets, ...); values given above still win.
    heartbeat_timeout_s: a process that sends no heartbeat for this long is declared dead, and every other
      process then terminates (non-zero) instead of waiting forever.
    initialization_timeout_s: how long to wait for every process to join.

  With only one process in all (num_processes == 1 and no `auto`), nothing is initialised.
  """
  coordinator_address = coordinator_address or os.environ.get(ENV_ADDRESS) or None
  num_processes = num_processes if num_processes is not None else _int_env(ENV_COUNT)
  process_id = process_id if process_id is not None else _int_env(ENV_ID)
  explicit = coordinator_address is not None or process_id is not None or (num_processes or 1) > 1
  if not (auto or explicit):
    return False
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"num_processes = {num_processes}: give at least 1.")
  if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id = {process_id} is outside [0, {num_processes}) (num_processes = {num_processes}).")
  if not auto and (coordinator_address is None or num_processes is None or process_id is None):
    missing = [n for n, v in (("--coordinator_address / $" + ENV_ADDRESS, coordinator_address),
                              ("--num_processes / $" + ENV_COUNT, num_processes),
                              ("--process_id / $" + ENV_ID, process_id)) if v is None]
    raise ValueError(f"a multi-process run needs {', '.join(missing)} too (or --distributed on a cluster that JAX "
                     f"detects: TPU pod slices, SLURM, Open MPI).")
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, heartbeat_timeout_seconds=int(heartbeat_timeout_s),
                             initialization_timeout=int(initialization_timeout_s))
  logging.info("process %d of %d: %d local device(s) of %d (%s)", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
  return True


def is_primary() -> bool:
  """Whether this is process 0, the one that writes logs, metrics, exports, cards and plots."""
  return jax.process_index() == 0


def local_rows(sharding: jax.sharding.Sharding, global_rows: int) -> slice:
  """The contiguous rows [start, stop) of a (global_rows, ...) array sharded by `sharding` on its first axis that
  live on this process's devices: what this process reads and passes to `jax.make_array_from_process_local_data`."""
  index_map = sharding.addressable_devices_indices_map((global_rows,))
  spans = sorted({(idx[0].start or 0, global_rows if idx[0].stop is None else idx[0].stop)
                  for idx in index_map.values()})
  start, stop = spans[0][0], spans[0][1]
  for a, b in spans[1:]:
    if a > stop:
      raise ValueError(f"this process's devices hold rows {spans} of the batch, not one contiguous block; build the "
                       f"mesh from jax.devices() in process order.")
    stop = max(stop, b)
  return slice(start, stop)


def local_copy(tree: Any) -> Any:
  """`tree` with every replicated global array replaced by this process's own copy on its first local device
  (evaluation, verification and export then run in this process alone, with no collective). Leaves that are not
  arrays pass through."""
  device = jax.local_devices()[0]

  def one(x):
    if not isinstance(x, jax.Array):
      return x
    if not x.is_fully_replicated:
      raise ValueError(f"local_copy needs replicated arrays; got one sharded as {x.sharding}.")
    for shard in x.addressable_shards:
      if shard.device == device:
        return shard.data
    return jax.device_put(x.addressable_shards[0].data, device)
  return jax.tree.map(one, tree)


def broadcast_json(value: Any) -> Any:
  """Process 0's `value` (anything JSON can hold) on every process; `value` itself with one process. A
  collective: every process must call it at the same point."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  data = np.frombuffer(json.dumps(value).encode(), np.uint8) if is_primary() else np.zeros(0, np.uint8)
  size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
  padded = np.zeros(size, np.uint8)
  padded[: data.size] = data[:size]
  out = np.asarray(multihost_utils.broadcast_one_to_all(padded))
  return json.loads(out.tobytes().decode())


def barrier(name: str, timeout_s: float = 600) -> None:
  """Waits until every process reaches `barrier(name)`, at most `timeout_s` (then raises). Uses the coordination
  service (no device collective), so a process busy exporting does not hold a collective open."""
  if jax.process_count() == 1:
    return
  from jax._src import distributed as _distributed  # pylint: disable=import-outside-toplevel

  client = _distributed.global_state.client
  if client is None:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)
    return
  client.wait_at_barrier(f"nnx-zoo/{name}", int(timeout_s * 1000))
