"""Data parallelism over every device: one mesh axis `data`, batches split on it,
state replicated. One code path for 1 or N devices (and hosts). Also the jit helper for
functions whose speed does not matter."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    return Mesh(np.array(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh, trial_axis: bool = False) -> NamedSharding:
    """Batch rows split over the data axis; `trial_axis`: a leading axis of vmapped
    trials comes first and is not split."""
    return NamedSharding(
        mesh, PartitionSpec(None, DATA_AXIS) if trial_axis else PartitionSpec(DATA_AXIS)
    )


def shard_batch(batch: dict, mesh: Mesh, trial_axis: bool = False) -> dict:
    """This host's numpy batch -> global arrays split over the data axis."""
    sharding = data_sharded(mesh, trial_axis)
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in batch.items()
    }


def jit_unoptimised(fn, out_shardings):
    """jit for functions whose speed does not matter (init, unstacking trials). On CPU
    they are compiled without LLVM's optimisations: the threefry random-number code of
    parameter initialisers then compiles several times faster (WORKSPACE.md notes)."""
    jitted = jax.jit(fn, out_shardings=out_shardings)
    if jax.default_backend() != "cpu":
        return jitted
    compiled = []  # the shapes never change within a run: compile on the first call

    def call(*args):
        if not compiled:
            options = {"xla_backend_optimization_level": 0}
            compiled.append(jitted.lower(*args).compile(compiler_options=options))
        return compiled[0](*args)

    return call
