"""What a run keeps besides checkpoints, so tools can rebuild its task without its data:
`config.json` and `run.json` (the input's description, e.g. class names or vocabulary,
the example batch's shapes, the planned number of steps)."""

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np

from jaxdl import configs, tasks
from jaxdl.errors import UserError
from jaxdl.train import checkpoint

RUN_INFO_FILE = "run.json"


def write_run_info(workdir: Path, info: dict, example_batch: dict, total_steps: int) -> None:
    """`example_batch`: the global batch (its shapes over all hosts and devices)."""
    batch_spec = {k: f"{np.dtype(v.dtype)}{list(v.shape)}" for k, v in example_batch.items()}
    record = {"data": info, "batch": batch_spec, "total_steps": total_steps}
    (Path(workdir) / RUN_INFO_FILE).write_text(json.dumps(record, indent=1) + "\n")


def _parse_spec(spec: str) -> jax.ShapeDtypeStruct:
    """'int32[8, 16]' -> ShapeDtypeStruct((8, 16), int32)."""
    dtype, shape = spec.rstrip("]").split("[")
    return jax.ShapeDtypeStruct(tuple(int(d) for d in shape.split(",") if d.strip()), dtype)


def load_run(workdir: str | Path, step: int | None = None):
    """(config, data info, task, state) of a run's newest (or given) checkpoint, restored
    onto the default device. The saved config is resolved as it was trained: keys it
    predates take their entries' legacy values (registry.Entry.legacy)."""
    workdir = Path(workdir)
    for name in ("config.json", RUN_INFO_FILE):
        if not (workdir / name).is_file():
            raise UserError(f"{workdir} is not a run directory: no {name}")
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    config = configs.resolve(config, saved=True)
    record = json.loads((workdir / RUN_INFO_FILE).read_text())
    task = tasks.build(config, record["data"], record["total_steps"])
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
