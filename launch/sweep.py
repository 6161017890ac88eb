"""Run a hyperparameter sweep: every trial a training run in its own workdir.

    python launch/sweep.py --config=experiments/fashion_cnn.py --sweep_dir=runs/sweep \\
        --sweep='config.optimizer.learning_rate=[1e-3,3e-3]' --sweep='config.seed=range(3)' \\
        --parallel=2

Trials: the experiment file's `sweep()` (a list of override dicts; see jaxdl/sweeps/spec.py),
times the grid of the --sweep flags. `--config.sweep.vmap=K` trains up to K trials that
differ only in seed and optimizer learning_rate / weight_decay / clip_norm in one
vmapped step (one process), each still its own run directory. Every trial's config is
validated before anything runs. Running the same command again skips finished trials.
Writes sweep.json (the manifest) and summary.{csv,md,png} in --sweep_dir.
"""

import importlib.util
import json
import sys

from _tool import define_config_flag, tool_main
from absl import app, flags, logging
from ml_collections import config_flags

define_config_flag()
flags.DEFINE_string("sweep_dir", None, "Directory of the sweep (one subdirectory per trial).")
flags.DEFINE_multi_string("sweep", [], "config.a.b=[v1,v2] or config.a.b=range(n): a grid axis.")
flags.DEFINE_enum("backend", "local", ["local", "slurm"], "Where trials run.")
flags.DEFINE_integer("parallel", 1, "Trials at a time.")
flags.DEFINE_multi_string("sbatch", [], "slurm: an #SBATCH option, e.g. --sbatch=--gres=gpu:1")
flags.DEFINE_integer("tasks_per_trial", 1, "slurm: processes (srun tasks) of each trial's job.")
flags.DEFINE_list("gpus", [], "GPU ids, one per concurrent trial (default: CPU cores).")
flags.DEFINE_string("metric", "eval/loss", "Metric that ranks trials.")
flags.DEFINE_enum("mode", "min", ["min", "max"], "Whether lower or higher is better.")
flags.mark_flags_as_required(["config", "sweep_dir"])
FLAGS = flags.FLAGS


def defined_trials(config_path: str) -> list[dict] | None:
    """The experiment file's sweep(), if it defines one."""
    spec = importlib.util.spec_from_file_location("experiment", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sweep() if hasattr(module, "sweep") else None


@tool_main
def main():
    from jaxdl import data, sweeps
    from jaxdl.sweeps import runner as sweep_lib
    from jaxdl.sweeps.grouping import vmap_key
    from jaxdl.train import validate

    # What every trial's launch/train.py gets first: this --config=FILE[:ARG] and any
    # --config.a.b=v given here; then its own overrides.
    base_args = [a for a in sys.argv[1:] if a.startswith(("--config=", "--config."))]
    axes = [sweeps.parse_axis(spec) for spec in FLAGS.sweep]
    path = config_flags.get_config_filename(FLAGS["config"])
    trials = sweeps.combine(defined_trials(path), axes)
    inputs = {}  # data config -> built input, shared by the trials that use it
    groups = []  # trials with equal keys may train in one vmapped step
    for overrides in trials:
        config = sweeps.apply_overrides(FLAGS.config, overrides)
        key = config.data.to_json()
        if key not in inputs:
            inputs[key] = data.build_input(config.data, config.seed)
        validate(config, inputs[key])
        groups.append(json.dumps(vmap_key(config), sort_keys=True))
    names = [sweeps.trial_name(i, t) for i, t in enumerate(trials)]
    sweep = sweep_lib.Sweep(
        base_args, trials, names, FLAGS.sweep_dir, FLAGS.config.sweep.vmap, groups
    )
    slots = sweep_lib.device_slots(FLAGS.parallel, FLAGS.gpus) if FLAGS.backend == "local" else []
    logging.info(
        "%d trials, %d at a time (%s), in %s",
        len(trials),
        FLAGS.parallel,
        FLAGS.backend,
        FLAGS.sweep_dir,
    )
    if FLAGS.backend == "local":
        sweep.run(slots)
    else:
        sweep.run_slurm(FLAGS.parallel, FLAGS.sbatch, tasks_per_trial=FLAGS.tasks_per_trial)
    best = sweep_lib.write_summary(sweep, FLAGS.metric, FLAGS.mode)
    counts = {s: sum(t["status"] == s for t in sweep.trials) for s in ("done", "failed")}
    logging.info(
        "%d done, %d failed; best: %s; summary in %s/summary.md",
        counts["done"],
        counts["failed"],
        best["trial"] if best else "none",
        FLAGS.sweep_dir,
    )
    if sweep.stopped:
        return 130
    return 0 if counts["failed"] == 0 else sweep_lib.SOME_TRIALS_FAILED


if __name__ == "__main__":
    app.run(main)
