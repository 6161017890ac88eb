"""Data parallelism over every device: one mesh axis `data`, batches split on it. One code
path for 1 or N devices (and hosts). The state is replicated, or with `fsdp` (fully
sharded data parallelism) its large arrays are split over the same axis, each along a
dimension the device count divides; XLA gathers them where a step needs them. Also the
jit helper for functions whose speed does not matter."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
PARAM_SHARDINGS = ("replicated", "fsdp")
# fsdp leaves arrays smaller than this replicated: splitting them saves little memory
# and costs a gather each.
FSDP_MIN_SIZE = 1024


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


def state_shardings(abstract_state, mesh: Mesh, mode: str):
    """A sharding per leaf of the state: all replicated, or (`fsdp`) each array of at least
    FSDP_MIN_SIZE elements split over the data axis along its largest dimension that the
    device count divides (replicated if none does)."""
    devices = mesh.devices.size

    def one(leaf) -> NamedSharding:
        if mode == "replicated" or devices == 1 or np.prod(leaf.shape) < FSDP_MIN_SIZE:
            return replicated(mesh)
        dims = [d for d in np.argsort(leaf.shape)[::-1] if leaf.shape[d] % devices == 0]
        if not dims:
            return replicated(mesh)
        spec = [None] * len(leaf.shape)
        spec[dims[0]] = DATA_AXIS
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree.map(one, abstract_state)


def shard_batch(batch: dict, mesh: Mesh, trial_axis: bool = False) -> dict:
    """This host's numpy batch -> global arrays split over the data axis."""
    sharding = data_sharded(mesh, trial_axis)
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in batch.items()
    }


# XLA's CPU options for programs compiled to run once or twice: no LLVM optimisations,
# and the older emitters of fused loops, which compile faster (WORKSPACE.md notes).
QUICK_CPU_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def jit_unoptimised(fn, out_shardings):
    """jit for functions whose speed does not matter (init, unstacking trials). On CPU
    they are compiled with QUICK_CPU_COMPILE: the threefry random-number code of
    parameter initialisers then compiles several times faster (WORKSPACE.md notes)."""
    jitted = jax.jit(fn, out_shardings=out_shardings)
    if jax.default_backend() != "cpu":
        return jitted
    compiled = []  # the shapes never change within a run: compile on the first call

    def call(*args):
        if not compiled:
            compiled.append(jitted.lower(*args).compile(compiler_options=QUICK_CPU_COMPILE))
        return compiled[0](*args)

    return call
