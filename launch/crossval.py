"""k-fold cross-validation: one training run per held-out fold, then per-fold accuracy
and mean ± std.

    python launch/crossval.py --config=experiments/polarity_han.py --cv_dir=runs/cv

Each fold k is a run of launch/train.py with --config.data.fold=k in cv_dir/<trial>/
(a sweep over data.fold: jaxdl/sweeps/runner.py; the same command again skips finished
folds). Prints the table and writes cv_dir/crossval.{md,json} (and the sweep's summary).

--seeds=N trains each fold N times (config.seed, config.seed + 1, ...): each fold's
accuracy is then the mean over its seeds, and the table adds the accuracy of their
ensemble (mean class probabilities). With --config.sweep.vmap=N a fold's seeds train in
one process, one vmapped step.
"""

import sys

from _tool import define_config_flag, tool_main
from absl import app, flags, logging

define_config_flag()
flags.DEFINE_string("cv_dir", None, "Directory of the cross-validation (a run per fold).")
flags.DEFINE_list("folds", [str(k) for k in range(10)], "Held-out folds to run.")
flags.DEFINE_integer("seeds", 1, "Runs per fold: seeds config.seed, config.seed + 1, ...")
flags.DEFINE_integer("parallel", 1, "Runs at a time (each gets its share of the CPU cores).")
flags.DEFINE_string("metric", "eval/accuracy", "Final eval metric of each fold.")
flags.mark_flags_as_required(["config", "cv_dir"])
FLAGS = flags.FLAGS


@tool_main
def main():
    from jaxdl.errors import UserError, check
    from jaxdl.evaluation import crossval
    from jaxdl.sweeps import runner as sweep_lib
    from jaxdl.sweeps import slots as slots_lib
    from jaxdl.train import validate

    base_args = [a for a in sys.argv[1:] if a.startswith(("--config=", "--config."))]
    try:
        check("fold" in FLAGS.config.data, "the experiment's config.data has no fold")
        check(FLAGS.folds, "--folds must name at least one fold")
        check(FLAGS.seeds >= 1, f"--seeds={FLAGS.seeds} must be >= 1")
        folds = [int(k) for k in FLAGS.folds]
        seeds = [FLAGS.config.seed + s for s in range(FLAGS.seeds)]
        trials = crossval.trials(folds, seeds)
        for k in folds:
            config = FLAGS.config.copy_and_resolve_references()
            config.data.fold = k
            validate(config)
        groups = [str(t["data.fold"]) for t in trials]  # a fold's seeds may share a vmap
        sweep = sweep_lib.Sweep(base_args, trials, FLAGS.cv_dir, FLAGS.config.sweep.vmap, groups)
        slots = slots_lib.device_slots(FLAGS.parallel)
    except ValueError as e:
        raise UserError(f"--folds={','.join(FLAGS.folds)} must be integers ({e})") from e
    logging.info(
        "%d folds x %d seeds, %d at a time, in %s",
        len(folds),
        len(seeds),
        FLAGS.parallel,
        FLAGS.cv_dir,
    )
    sweep.run(slots)
    sweep_lib.write_summary(sweep, FLAGS.metric, "max")
    print(crossval.write_summary(sweep, FLAGS.metric))
    return sweep_lib.exit_code(sweep)


if __name__ == "__main__":
    app.run(main)
