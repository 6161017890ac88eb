"""What a run keeps besides checkpoints, so tools can rebuild its task without its data:
`config.json` and `run.json` (the input's description, e.g. class names or vocabulary,
the example batch's shapes, the planned number of steps, and the backend it trained on
with what its "auto" settings became there: jaxdl/backends.py).

run.json's `modules` names the module that registered the run's model, task and data
source (`registry.module_of`), and `module_paths` the folder of each one outside jaxdl
(an experiment's own folder): `load_run`, and a launcher given `--config=WORKDIR`,
import them again before they read the config (`import_modules`), so a model kept in
the user's own package is found by every tool. Runs written before the record load as
before; a recorded module that no longer imports is named by the lookup that misses it.

A run's config.json keeps "auto" as it was asked for: a tool, or a resumed run, builds it
for its own backend. That changes kernels, never parameters or the function computed
(backends.py), and a resume on another backend is logged and kept in run.json's
`earlier_backends`."""

import json
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxdl import backends, configs, registry, tasks
from jaxdl.errors import UserError, check
from jaxdl.train import checkpoint

RUN_INFO_FILE = "run.json"


def backend_record(config: ml_collections.ConfigDict) -> dict:
    """This process's backend, its first device's kind and what the config's "auto"
    settings become on it (run.json's `backend`)."""
    name = jax.default_backend()
    return {
        "name": name,
        "device_kind": jax.devices()[0].device_kind,
        "auto": backends.picked(config, name),
    }


def module_record(config: ml_collections.ConfigDict) -> dict:
    """run.json's `modules` (kind -> the module that registered config's entry) and,
    where any is outside jaxdl, `module_paths` (module -> the folder to import it from)."""
    modules, paths = {}, {}
    for kind in registry.KINDS:
        modules[kind], folder = registry.module_of(kind, config[kind].name)
        if folder:
            paths[modules[kind]] = folder
    return {"modules": modules, **({"module_paths": paths} if paths else {})}


def import_modules(record: dict) -> None:
    """Imports the modules a run.json `record` names (none in a run written before
    them), so that their entries are registered; one that fails is named by the error
    of a lookup of its names (registry.lookup)."""
    paths = record.get("module_paths", {})
    for kind, module in record.get("modules", {}).items():
        if kind in registry.KINDS and module != "__main__" and module not in sys.modules:
            registry.import_module(kind, module, paths.get(module), warn=False)


def write_run_info(
    workdir: Path,
    info: dict,
    example_batch: dict,
    total_steps: int,
    backend: dict,
    modules: dict | None = None,
) -> list[dict]:
    """`example_batch`: the global batch (its shapes over all hosts and devices);
    `backend`: `backend_record`'s; `modules`: `module_record`'s. A run.json there
    already (a resumed run) hands on the backends it named before when they differ
    from this one; returns those."""
    path = Path(workdir) / RUN_INFO_FILE
    earlier = []
    try:
        before = json.loads(path.read_text())
        earlier = [*before.get("earlier_backends", []), before["backend"]]
    except (OSError, ValueError, KeyError):  # a new run, or one written before the key
        pass
    earlier = [b for i, b in enumerate(earlier) if b != backend and b not in earlier[:i]]
    batch_spec = {k: f"{np.dtype(v.dtype)}{list(v.shape)}" for k, v in example_batch.items()}
    record = {"data": info, "batch": batch_spec, "total_steps": total_steps, "backend": backend}
    record.update(modules or {})
    if earlier:
        record["earlier_backends"] = earlier
    path.write_text(json.dumps(record, indent=1) + "\n")
    return earlier


def log_backend(backend: dict, earlier: list[dict]) -> None:
    """One line: the backend and what "auto" became; a warning when an earlier start of
    the run picked otherwise."""
    picked = ", ".join(f"{k}=auto -> {v}" for k, v in backend["auto"].items())
    logging.info(
        "backend %s (%s)%s", backend["name"], backend["device_kind"], f": {picked}" * bool(picked)
    )
    for before in earlier:
        if before.get("auto") != backend["auto"]:
            logging.warning(
                "this run trained on %s with %s before; it goes on with %s on %s (the same "
                "parameters and function, other kernels and rounding)",
                before.get("name"),
                before.get("auto"),
                backend["auto"],
                backend["name"],
            )


def _parse_spec(spec: str) -> jax.ShapeDtypeStruct:
    """'int32[8, 16]' -> ShapeDtypeStruct((8, 16), int32)."""
    dtype, shape = spec.rstrip("]").split("[")
    return jax.ShapeDtypeStruct(tuple(int(d) for d in shape.split(",") if d.strip()), dtype)


def checkpoint_step(workdir: str | Path, step: int | str | None) -> int | None:
    """A tool's --step: None (the newest), a step number (also as text), or "best": the
    step the run's best.json names (train.keep_best); else a UserError."""
    if step is None or isinstance(step, int):
        return step
    if step.isdigit():
        return int(step)
    check(step == "best", f"--step={step} must be a checkpoint step or 'best'")
    path = Path(workdir) / checkpoint.BEST_FILE
    if not path.is_file():
        raise UserError(
            f"--step=best: {workdir} has no {checkpoint.BEST_FILE} (a run keeps its best "
            "checkpoints with --config.train.keep_best=K --config.train.best_metric=eval/NAME)"
        )
    return int(json.loads(path.read_text())["step"])


def load_run(workdir: str | Path, step: int | str | None = None):
    """(config, data info, task, state) of a run's newest (or given: checkpoint_step)
    checkpoint, restored onto the default device. The saved config is resolved as it was
    trained: keys it predates take their entries' legacy values (registry.Entry.legacy)."""
    workdir = Path(workdir)
    step = checkpoint_step(workdir, step)
    for name in ("config.json", RUN_INFO_FILE):
        if not (workdir / name).is_file():
            raise UserError(f"{workdir} is not a run directory: no {name}")
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    record = json.loads((workdir / RUN_INFO_FILE).read_text())
    import_modules(record)
    config = configs.resolve(config, saved=True)
    task = tasks.build(config, record["data"], record["total_steps"], resolved=True)
    example = {k: _parse_spec(spec) for k, spec in record["batch"].items()}
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = checkpoint.abstract_like(
        jax.eval_shape(task.init, jax.random.PRNGKey(0), example), device
    )
    ckpts = checkpoint.Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        if ckpts.latest_step() is None:
            raise UserError(f"{workdir} has no checkpoint yet")
        if step is None:  # the newest that restores
            _, state, _ = ckpts.restore_newest(abstract)
        elif step not in ckpts.all_steps():
            raise UserError(f"{workdir} has no checkpoint {step} (it has {ckpts.all_steps()})")
        else:
            state, _ = ckpts.restore(step, abstract)
    except checkpoint.StateMismatchError as e:
        raise UserError(f"{workdir}'s checkpoints do not fit its config.json ({e})") from None
    finally:
        ckpts.close()
    return config, record["data"], task, state
