"""jaxdl.testing catches each bug it is for, naming the property, and passes the same
model and task without it."""

import pytest

from jaxdl import testing
from tests.testing import planted

# property -> (the model's bug, the task's bug) that breaks it
PLANTED = {
    "init_is_function_of_key": ("", "init_host_random"),
    "init_depends_on_key": ("", "init_ignores_key"),
    "no_float64": ("float64", ""),
    "step_is_deterministic": ("", "step_counter"),
    "jit_matches_eager": ("", "tracer_branch"),
    "metrics_are_finite_scalars": ("", "vector_metric"),
    "step_randomness_changes": ("dropout", "reused_key"),
    "eval_ignores_padding": ("", "eval_no_mask"),
    "eval_batch_size_invariant": ("", "eval_mean_of_means"),
    "rows_independent": ("mix_rows", ""),
    "gradients_match_finite_differences": ("stop_gradient", ""),
    "microbatches_match_whole_batch": ("batch_statistic", ""),
    "vmapped_trials_match_separate": ("", "ignores_trial_values"),
    "checkpoint_roundtrip": ("", "static_counter"),
    "bfloat16_close_to_float32": ("bfloat16", ""),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kit")


def check(data_dir, model_bug: str = "", task_bug: str = "", **options) -> dict:
    with planted.registered():
        return testing.check(
            model="planted_mlp",
            task="planted_classify",
            overrides={"model.bug": model_bug, "task.bug": task_bug},
            directory=data_dir,
            **options,
        )


@pytest.mark.parametrize("name", PLANTED)
def test_each_property_catches_its_bug(data_dir, name):
    model_bug, task_bug = PLANTED[name]
    with pytest.raises(AssertionError, match=rf"failed for model 'planted_mlp'.*\n  {name}: ") as e:
        check(data_dir, model_bug, task_bug, only=[name])
    print(f"{name} <- {model_bug or task_bug}: {e.value}")


def test_without_bugs_every_property_holds(data_dir):
    report = check(data_dir, skip=["mesh_matches_single_device"])
    assert report == {
        name: "ok" for name in testing.PROPERTIES if name != "mesh_matches_single_device"
    } | {"step_randomness_changes": "ok (the step draws nothing at random)"}


def test_unknown_property_is_refused(data_dir):
    with pytest.raises(ValueError, match="no such properties: \\['jit_is_fast'\\]"):
        check(data_dir, only=["jit_is_fast"])


def test_mesh_property_catches_a_kernel_partitioned_wrong(jaxdl_run_with_devices):
    """On 2 simulated devices: a custom kernel that centres each device's rows by their own
    mean fails mesh_matches_single_device; without it, the property holds."""
    code = (
        "from jaxdl import testing\n"
        "from tests.testing import planted\n"
        "only = ['mesh_matches_single_device']\n"
        "with planted.registered():\n"
        "    try:\n"
        "        testing.check(model='planted_mlp', task='planted_classify', only=only,\n"
        "                      overrides={'model.bug': 'partitioned_wrong'})\n"
        "    except AssertionError as e:\n"
        "        print(str(e).splitlines()[1])\n"
        "    print(testing.check(model='planted_mlp', task='planted_classify', only=only))\n"
    )
    caught, clean = jaxdl_run_with_devices(code, devices=2).splitlines()
    assert caught.startswith("  mesh_matches_single_device: a step on 2 devices vs one: ")
    assert clean == "{'mesh_matches_single_device': 'ok'}"
