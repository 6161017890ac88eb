"""What a setting left to the backend becomes on each one: pure functions of the backend's
name (`jax.default_backend()`: 'cpu', 'gpu', 'tpu'), so tests pin the choice per name.

    model.conv_impl="auto"   'matmul' on CPU (conv_as_matmul: shifted views and one matmul,
                             1.4-2x faster there on the default models), 'xla' (XLA's own
                             convolution, cuDNN on GPU) on every other backend. The CNN's
                             and the conv autoencoder's default; the GAN keeps 'xla',
                             faster on this CPU too (WORKSPACE.md's CPU notes).
    sweep.vmap_chunk=0       vmapped trials one at a time under lax.map on CPU (a K-trial
                             step overflows its caches), all K at once elsewhere.

Both are kernel choices: 'matmul' and 'xla' hold the same parameters and compute the same
function (to rounding), so a checkpoint of either restores into the other, and a run
trained on CPU with "auto" resumes on a GPU with XLA's convolution. `tasks.build` resolves
a config for the backend it builds for; the trainer logs what "auto" became and writes it
to run.json (`picked`). Left as they are on purpose: `train.compute_dtype` stays float32
on every backend (bfloat16 changes the numbers a run computes, not only its speed: it is
a choice per experiment, `--config.train.compute_dtype=bfloat16`); on GPUs XLA already
runs float32 matmuls and convolutions with TensorFloat-32 at its default precision.
"""

import copy

import ml_collections

AUTO = "auto"
CPU = "cpu"


def conv_impl(setting: str, backend: str) -> str:
    """`setting` unless it is "auto": then 'matmul' on CPU, 'xla' elsewhere."""
    if setting != AUTO:
        return setting
    return "matmul" if backend == CPU else "xla"


def vmap_chunk(setting: int, backend: str, num_trials: int) -> int:
    """Trials per vmapped slice of a step: `setting` (at most all of them), or when 0 one
    on CPU and all of them elsewhere (bench/results/sweep_vmap.md)."""
    if setting:
        return min(setting, num_trials)
    return 1 if backend == CPU else num_trials


def resolve(config: ml_collections.ConfigDict, backend: str) -> ml_collections.ConfigDict:
    """A copy of a resolved config in which the model's "auto" settings are what they
    become on `backend`; `config` itself is returned when nothing is left to it."""
    if config.model.get("conv_impl") != AUTO:
        return config
    resolved = copy.deepcopy(config)
    with resolved.unlocked():
        resolved.model.conv_impl = conv_impl(AUTO, backend)
    return resolved


def picked(config: ml_collections.ConfigDict, backend: str) -> dict:
    """What the config's "auto" settings become on `backend`, by dotted key (run.json's
    and the log's record); {} when it leaves nothing to the backend."""
    if config.model.get("conv_impl") != AUTO:
        return {}
    return {"model.conv_impl": conv_impl(AUTO, backend)}
