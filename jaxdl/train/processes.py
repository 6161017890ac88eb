"""Child processes of the launchers (sweep trials, the processes of a multi-process run)
and joining a multi-process JAX job."""

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading

# What launch/multiprocess.py tells each process it starts (launch/train.py reads them).
COORDINATOR_ENV = "JAXDL_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAXDL_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXDL_PROCESS_ID"
# The read end of a pipe from launch/multiprocess.py: a line on it says another process
# of the job failed, and this one exits at once (see watch_job).
JOB_PIPE_ENV = "JAXDL_JOB_PIPE"
# What a process whose job lost another process exits with.
LOST_PEER_EXIT = 1
_watched = False  # watch_job started its thread


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
    watch_job()


def watch_job() -> None:
    """Under launch/multiprocess.py: a thread that ends this process at once when the
    launcher says another process of the job failed. Once one has died every collective
    fails or waits for it, wherever this process is (a step, an eval, a save's barrier,
    JAX's shutdown, which waited ~95 s for its heartbeat timeout), and nothing more can
    be saved: the rerun resumes from the last complete checkpoint. The launcher's line
    says which process died."""
    if JOB_PIPE_ENV not in os.environ:
        return
    global _watched
    pipe = int(os.environ.pop(JOB_PIPE_ENV))  # not for the processes this one starts

    def watch() -> None:
        with os.fdopen(pipe, "rb", buffering=0) as lines:
            if lines.readline():  # nothing (the launcher died): PR_SET_PDEATHSIG's SIGTERM
                exit_now(LOST_PEER_EXIT)

    threading.Thread(target=watch, name="jaxdl-job-watch", daemon=True).start()
    _watched = True


def exit_now(code: int) -> None:
    """Exits without Python's or JAX's exit handlers (jax.distributed's shutdown waits for
    every process of the job, a dead one too, until its heartbeat times out)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed
            stream.flush()
    os._exit(code)


def lost_peer(error: BaseException) -> bool:
    """Whether `error` is a collective that failed because another process of the job is
    gone (gloo: 'Connection reset by peer', 'Connection closed by peer', ...)."""
    import jax

    if not isinstance(error, jax.errors.JaxRuntimeError) or jax.process_count() == 1:
        return False
    text = str(error).lower()
    return "gloo" in text or "peer" in text


def under_launcher() -> bool:
    """Whether launch/multiprocess.py watches this process (it says who died)."""
    return _watched


def in_job() -> bool:
    """Whether the launcher should join a multi-process job started by
    launch/multiprocess.py (its environment says so)."""
    return COORDINATOR_ENV in os.environ
