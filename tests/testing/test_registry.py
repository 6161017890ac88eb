"""Every model and task jaxdl ships passes jaxdl.testing: a newly registered one is
checked here without anyone writing a test for it. Each model is checked with the first
task of its family; a task no model reached is checked with the first model of its."""

import pytest

from jaxdl import registry, testing

# Small sizes of the shipped models (the defaults train real data sets): each check
# then takes seconds. A model not named here is checked at its defaults.
SMALL = {
    "cnn": {"model.stages": ((4,), (8,)), "model.dense": 16},
    "mlp": {"model.hidden": (16,)},
    "han": {"model.embed": 8, "model.hidden": 8, "model.attention": 8},
    "rnn_lm": {"model.hidden": 16, "model.layers": 1},
    "autoencoder": {"model.hidden": (16,), "model.latent": 4, "task.iwae_samples": 2},
    "dcgan": {"model.g_width": 4, "model.d_width": 4, "task.noise_dim": 8},
}


def _shipped(kind: str) -> list[str]:
    names = registry.names(kind)
    return [n for n in names if registry.lookup(kind, n).build.__module__.startswith("jaxdl.")]


def _first(kind: str, family: str) -> str:
    return next(n for n in _shipped(kind) if registry.lookup(kind, n).family == family)


def _pairs() -> list[tuple[str, str]]:
    pairs = [(m, _first("task", registry.lookup("model", m).family)) for m in _shipped("model")]
    reached = {task for _, task in pairs}
    for task in _shipped("task"):
        if task not in reached:
            pairs.append((_first("model", registry.lookup("task", task).family), task))
    return pairs


PAIRS = _pairs()


def test_every_shipped_model_and_task_is_paired():
    assert {m for m, _ in PAIRS} == set(_shipped("model"))
    assert {t for _, t in PAIRS} == set(_shipped("task"))


@pytest.mark.parametrize(("model", "task"), PAIRS)
def test_shipped(model, task, tmp_path):
    report = testing.check(
        model=model, task=task, overrides=SMALL.get(model), directory=tmp_path,
        skip=["mesh_matches_single_device"],  # on simulated devices below
    )  # fmt: skip
    print(model, task, report)


def test_shipped_on_two_devices(jaxdl_run_with_devices):
    """Each pair's step on a mesh of 2 devices (fsdp) agrees with one device's."""
    code = (
        "from jaxdl import testing\n"
        f"for model, task in {PAIRS!r}:\n"
        f"    overrides = {SMALL!r}.get(model)\n"
        "    report = testing.check(model=model, task=task, overrides=overrides, "
        "only=['mesh_matches_single_device'])\n"
        "    print(model, task, report['mesh_matches_single_device'])\n"
    )
    output = jaxdl_run_with_devices(code, devices=2)
    assert output.splitlines() == [f"{m} {t} ok" for m, t in PAIRS]
