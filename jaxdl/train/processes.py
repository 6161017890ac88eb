"""Child processes of the launchers (sweep trials, the processes of a multi-process run)
and joining a multi-process JAX job."""

import ctypes
import os
import signal
import socket

# What launch/multiprocess.py tells each process it starts (launch/train.py reads them).
COORDINATOR_ENV = "JAXDL_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAXDL_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXDL_PROCESS_ID"


def die_with_parent() -> None:
    """In a child before exec (Linux): SIGTERM when its parent dies, even by SIGKILL, so
    no child outlives the launcher that started it."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_job(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """jax.distributed.initialize with what is given, else what launch/multiprocess.py
    put in the environment, else JAX's own detection (SLURM, ...). CPU processes
    exchange collectives over gloo."""
    coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV)
    if num_processes is None and NUM_PROCESSES_ENV in os.environ:
        num_processes = int(os.environ[NUM_PROCESSES_ENV])
    if process_id is None and PROCESS_ID_ENV in os.environ:
        process_id = int(os.environ[PROCESS_ID_ENV])
    import jax  # here: launch/multiprocess.py starts its children without importing JAX

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def in_job() -> bool:
    """Whether the launcher should join a multi-process job started by
    launch/multiprocess.py (its environment says so)."""
    return COORDINATOR_ENV in os.environ
