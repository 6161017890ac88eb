"""Run a hyperparameter sweep: every trial a training run in its own workdir.

    python launch/sweep.py --config=experiments/fashion_cnn.py --sweep_dir=runs/sweep \\
        --sweep='config.optimizer.learning_rate=[1e-3,3e-3]' --sweep='config.seed=range(3)' \\
        --parallel=2

Trials: the experiment file's `sweep()` (a list of override dicts; see jaxdl/sweeps/spec.py),
times the grid of the --sweep flags. `--config.sweep.vmap=K` trains up to K trials that
differ only in seed and optimizer learning_rate / weight_decay / clip_norm in one
vmapped step (one process), each still its own run directory. Every trial's config is
validated before anything runs. Running the same command again skips finished trials;
with more values on the axes, the sweep grows by the new trials. Writes sweep.json (the
manifest) and summary.{csv,md,png} in --sweep_dir. `--backend=slurm`: one job array,
each task requeued (and resumed) when its time limit nears or it is preempted.

`--search=optuna --trials=N` searches instead (jaxdl/sweeps/search.py): the space is the
experiment's search_space() and the --space flags; --parallel worker processes each train
their trials one after another in their own process; with --config.sweep.vmap=K, K trials
asked at once train as one vmapped run. The study: sweep_dir/study.db (SQLite) on one
machine, sweep_dir/study.journal (Optuna's journal file) with --backend=slurm, or
--storage=URL (an RDB).
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
flags.DEFINE_enum(
    "search", "grid", ["grid", "optuna"], "grid: the trials listed; optuna: searched."
)
flags.DEFINE_integer("trials", 10, "optuna: trials in the study.")
flags.DEFINE_multi_string(
    "space", [], "optuna: config.a.b=loguniform(1e-4,1e-2) | uniform(a,b) | int(a,b) | choice([..])"
)
flags.DEFINE_enum("pruner", "median", ["median", "successive_halving", "none"], "optuna's pruner.")
flags.DEFINE_float(
    "prune_after",
    0.0,
    "optuna: the share of a trial's steps before which it is never pruned (0: from its "
    "first eval on).",
)
flags.DEFINE_integer("search_seed", 0, "optuna: the sampler's seed.")
flags.DEFINE_integer(
    "startup_trials", 10, "optuna: trials drawn at random before TPE models the others."
)
flags.DEFINE_string(
    "search_worker",
    None,
    "optuna, internal: RUN:NUMBER, run as worker NUMBER of the search's run RUN.",
)
flags.DEFINE_string(
    "storage",
    "auto",
    "optuna: where the study is kept: sqlite (sweep_dir/study.db, one machine), journal "
    "(sweep_dir/study.journal, Optuna's journal file, fit for NFS: workers on several nodes), "
    "an RDB URL (postgresql://...), or auto: the one sweep_dir holds, else journal for "
    "--backend=slurm and sqlite for local.",
)
flags.DEFINE_string("metric", "eval/loss", "Metric that ranks trials.")
flags.DEFINE_enum("mode", "min", ["min", "max"], "Whether lower or higher is better.")
flags.mark_flags_as_required(["config", "sweep_dir"])
FLAGS = flags.FLAGS


def experiment_module(config_path: str):
    spec = importlib.util.spec_from_file_location("experiment", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def defined_trials(config_path: str) -> list[dict] | None:
    """The experiment file's sweep(), if it defines one."""
    module = experiment_module(config_path)
    return module.sweep() if hasattr(module, "sweep") else None


def search_options():
    """The search's settings from the flags (study.SearchOptions)."""
    from jaxdl.sweeps.study import SearchOptions, resolve_storage

    storage = resolve_storage(FLAGS.sweep_dir, FLAGS.storage, FLAGS.backend == "slurm")
    return SearchOptions(
        num_trials=FLAGS.trials,
        metric=FLAGS.metric,
        mode=FLAGS.mode,
        seed=FLAGS.search_seed,
        pruner=FLAGS.pruner,
        prune_after=FLAGS.prune_after,
        vmap=FLAGS.config.sweep.vmap,
        startup_trials=FLAGS.startup_trials,
        storage=storage,
    )


def run_search(base_args: list[str]) -> int:
    """--search=optuna: trials asked from the study in --sweep_dir (jaxdl/sweeps/search.py)
    by worker processes, this command again with --search_worker: --parallel of them on
    local slots, or as SLURM array tasks; each trains its trials in its own process."""
    from jaxdl import sweeps
    from jaxdl.errors import check
    from jaxdl.sweeps import search as search_lib
    from jaxdl.sweeps import slots as slots_lib
    from jaxdl.train import validate

    module = experiment_module(config_flags.get_config_filename(FLAGS["config"]))
    space = dict(module.search_space()) if hasattr(module, "search_space") else {}
    space.update(dict(sweeps.parse_distribution(s) for s in FLAGS.space))
    if FLAGS.search_worker:
        run_id, _, number = FLAGS.search_worker.rpartition(":")
        search = search_lib.Search(
            base_args, FLAGS.sweep_dir, space, search_options(), run_id=run_id, worker=int(number)
        )
        FLAGS.showprefixforinfo = False  # its trials' logs read as launch/train.py's
        search.work(FLAGS.config)
        return 0
    # The low end of every axis: unknown keys and bad values are one line now, not
    # failed trials later.
    low = {
        name: args[0][0] if kind == "choice" else args[0] for name, (kind, *args) in space.items()
    }
    validate(sweeps.apply_overrides(FLAGS.config, low))
    check(
        not FLAGS.config.sweep.pbt_every,
        "--search=optuna does not combine with config.sweep.pbt_every (population-based "
        "training is a grid sweep's vmapped group)",
    )
    local = FLAGS.backend == "local"
    slots = slots_lib.device_slots(FLAGS.parallel, FLAGS.gpus) if local else []
    search = search_lib.Search(base_args, FLAGS.sweep_dir, space, search_options())
    worker = [sys.executable, __file__, *sys.argv[1:]]
    if local:
        search.run(slots, worker)
    else:
        search.run_slurm(worker, FLAGS.parallel, FLAGS.sbatch)
    best = search.write_summary()
    rows = search.rows()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "pruned", "failed")}
    logging.info(
        "%d done, %d pruned, %d failed; best: %s; summary in %s/summary.md",
        counts["done"],
        counts["pruned"],
        counts["failed"],
        best["trial"] if best else "none",
        FLAGS.sweep_dir,
    )
    return search.exit_code()


@tool_main
def main():
    from jaxdl import data, sweeps
    from jaxdl.sweeps import runner as sweep_lib
    from jaxdl.sweeps import slots as slots_lib
    from jaxdl.train import validate
    from jaxdl.train.grouping import vmap_key

    # What every trial's launch/train.py gets first: this --config=FILE[:ARG] and any
    # --config.a.b=v given here; then its own overrides.
    base_args = [a for a in sys.argv[1:] if a.startswith(("--config=", "--config."))]
    if FLAGS.search == "optuna":
        return run_search(base_args)
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
    sweep = sweep_lib.Sweep(base_args, trials, FLAGS.sweep_dir, FLAGS.config.sweep.vmap, groups)
    logging.info(
        "%d trials, %d at a time (%s), in %s",
        len(sweep.trials),
        FLAGS.parallel,
        FLAGS.backend,
        FLAGS.sweep_dir,
    )
    if FLAGS.backend == "local":
        sweep.run(slots_lib.device_slots(FLAGS.parallel, FLAGS.gpus))
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
    return sweep_lib.exit_code(sweep)


if __name__ == "__main__":
    app.run(main)
