"""Checks for your own model or task, in one call, on chex.

    from jaxdl import testing

    def test_my_model(tmp_path):
        testing.check_model("resmlp", directory=tmp_path)

`check_model(name)` trains a registered model with a task of its family, and
`check_task(name)` a registered task with a model of its family, one step at a time on
small generated data (testing/data.py), and checks the properties a JAX training
component must have (testing/properties.py, one function each, in this order):

    init_is_function_of_key          same key, same state, also traced again
    init_depends_on_key              another key, other parameters
    no_float64                       no 64-bit float with jax_enable_x64
    step_is_deterministic            same state and batch, same step, also retraced
    jit_matches_eager                the jitted step agrees with a direct call
    metrics_are_finite_scalars       train metrics scalars, eval metrics losses.Mean
    step_randomness_changes          each step draws other random numbers
    eval_ignores_padding             rows with mask False change no eval metric
    eval_batch_size_invariant        two parts of a batch merged == the batch
    rows_independent                 in eval, row i's output ignores the other rows
    gradients_match_finite_differences   the step's gradient vs finite differences
    microbatches_match_whole_batch   train.microbatches=2 == the whole batch
    vmapped_trials_match_separate    vmapped trials == separate runs
    mesh_matches_single_device       N devices == 1 (with simulated devices)
    checkpoint_roundtrip             save and restore is bit-equal
    bfloat16_close_to_float32        bfloat16 compute near float32's losses

Every failure is reported by name with its numbers, in one AssertionError; a property
that does not apply is skipped and the returned report says why. `only=` / `skip=` pick
properties by name; `tolerances={name: value}` changes a default (properties.PROPERTIES).
"""

import tempfile
from pathlib import Path

from jaxdl import configs, registry
from jaxdl.sweeps.spec import apply_overrides
from jaxdl.testing import data
from jaxdl.testing.properties import PROPERTIES, Failed, Skipped, Subject

__all__ = ["PROPERTIES", "check", "check_model", "check_task", "data"]


def check_model(model: str, *, task: str | None = None, **options) -> dict[str, str]:
    """Checks registered model `model` trained by `task` (default: the first task, by
    name, that trains its family). Options: see `check`."""
    family = registry.lookup("model", model).family
    if task is None:
        task = _first("task", family)
    return check(model=model, task=task, **options)


def check_task(task: str, *, model: str | None = None, **options) -> dict[str, str]:
    """Checks registered task `task` training `model` (default: the first model, by
    name, of the family it trains). Options: see `check`."""
    family = registry.lookup("task", task).family
    if model is None:
        model = _first("model", family)
    return check(model=model, task=task, **options)


def check(
    *,
    model: str,
    task: str,
    overrides: dict | None = None,
    data_section: dict | None = None,
    only=None,
    skip=(),
    tolerances: dict | None = None,
    directory: str | Path | None = None,
) -> dict[str, str]:
    """Checks `model` trained by `task`; returns {property: "ok" or "skipped: why"} and
    raises AssertionError naming every property that failed, with its numbers.

    `overrides`: {"model.hidden": (16,), "task.flip": True, ...} on the registered
    defaults (smaller models check faster); `data_section`: a config.data of your own
    (default: generated data fitting the task, written in `directory`, default a
    temporary folder); `only` / `skip`: property names; `tolerances`: {name: value}."""
    unknown = set(only or ()) | set(skip) | set(tolerances or ())
    unknown -= set(PROPERTIES)
    if unknown:
        raise ValueError(f"no such properties: {sorted(unknown)} (see testing.PROPERTIES)")
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(directory or scratch)
        config = _config(model, task, data_section or data.for_task(task, directory), overrides)
        subject = Subject.build(config, directory)
        report, failures = {}, []
        for name, (prop, default) in PROPERTIES.items():
            if (only is not None and name not in only) or name in skip:
                continue
            try:
                note = prop(subject, (tolerances or {}).get(name, default))
                report[name] = f"ok ({note})" if note else "ok"
            except Skipped as e:
                report[name] = f"skipped: {e}"
            except Failed as e:
                failures.append(f"  {name}: {e}")
                report[name] = "FAILED"
    if failures:
        raise AssertionError(
            f"jaxdl.testing: {len(failures)} of {len(report)} properties failed for model "
            f"{model!r} with task {task!r}:\n" + "\n".join(failures)
        )
    return report


def _config(model: str, task: str, data_section: dict, overrides: dict | None):
    config = configs.base_config(model=model, task=task, data=data_section["name"])
    config.data.update(data_section)
    config.train.num_steps = 100
    config.optimizer.warmup_fraction = 0.0  # so that the first step moves the parameters
    return configs.resolve(apply_overrides(config, overrides or {}))


def _first(kind: str, family: str) -> str:
    matching = [n for n in registry.names(kind) if registry.lookup(kind, n).family == family]
    if not matching:
        raise ValueError(f"no registered {kind} of family {family!r}")
    return matching[0]
