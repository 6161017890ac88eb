"""Train an experiment: python launch/train.py --config=experiments/x.py --workdir=DIR

Override any config value with --config.a.b=value. Re-running with the same workdir
resumes from its newest checkpoint, with the same config: a change of what the run
computes is refused, naming each key, unless --allow_config_change (then it is recorded
in WORKDIR/config_history.jsonl). Bad flags, configs and data exit non-zero with one
line on stderr. `--vmap_trials=FILE` (written by launch/sweep.py, instead of --workdir):
a JSON list of {"workdir", "overrides"} trained together in one vmapped step.
"""

import json
import re
import sys

from _tool import define_config_flag, tool_main
from absl import app, flags, logging

define_config_flag()
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_string("vmap_trials", None, "JSON list of {workdir, overrides}: vmapped trials.")
flags.DEFINE_bool(
    "jax_distributed",
    False,
    "Join a multi-process job (jax.distributed.initialize): the cluster is detected (SLURM, "
    "...) unless the flags below say; implied under launch/multiprocess.py.",
)
flags.DEFINE_string("coordinator_address", None, "Multi-process: HOST:PORT of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-process: how many processes.")
flags.DEFINE_integer("process_id", None, "Multi-process: this process's index.")
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume a run with a config that computes something else (optimizer, schedule, model, "
    "data, seed, steps): the change is recorded in WORKDIR/config_history.jsonl. Without "
    "it such a resume is refused, naming each changed key.",
)
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def _one_line(error: Exception, argv: list[str]) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if isinstance(error, AttributeError | KeyError) and lines:
        # ml_collections names only the missing key (inside reprs of nested errors) and a
        # guess; name the override that used it.
        text = _innermost_message(error)
        key = re.search(r"['\"]([^'\"]+)['\"]", text)
        key = key.group(1) if key else text.split()[0]
        guess = re.search(r'Did you mean "([^"]+)"', text)
        used = [a for a in argv if a.startswith("--config.") and f".{key}" in a.split("=")[0]]
        where = used[0] if used else "the config overrides"
        return f"unknown config key {key!r} in {where}" + (
            f" (did you mean {guess.group(1)!r}?)" if guess else ""
        )
    if isinstance(error, OSError) and lines:
        return f"cannot load --config: {lines[-1]}"  # the last line names the file and why
    if "Error whilst parsing config file" in str(error):
        return f"--config: {lines[-1]}"  # the config file's own exception, last
    return lines[0] if lines else type(error).__name__


def _innermost_message(error: BaseException) -> str:
    """The message of an error whose first argument may be another error, unescaped."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    text = str(error.args[0]) if error.args else str(error)
    return text.encode().decode("unicode_escape") if "\\" in text else text


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with every failure (unknown config key, wrong type, missing or
    broken config file) reported as one line and exit status 2."""
    try:
        remaining = FLAGS(argv)
        FLAGS.config.keys()  # a config file that failed to load raises here
    except Exception as e:  # flags.Error, and whatever a config file or override raises
        print(f"error: {_one_line(e, argv)}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.workdir is None and FLAGS.vmap_trials is None:
        print("error: --workdir is required (the run's directory)", file=sys.stderr)
        sys.exit(2)
    return remaining


@tool_main
def main():
    from jaxdl import sweeps
    from jaxdl.sweeps.runner import SOME_TRIALS_FAILED
    from jaxdl.train import processes, train_and_evaluate, train_trials
    from jaxdl.train.hooks import StopOnSignal
    from jaxdl.train.rundir import FAILED_FILE

    StopOnSignal.ignore_after_stop = True  # this process exits after training
    explicit = FLAGS.coordinator_address or FLAGS.num_processes or FLAGS.process_id is not None
    if FLAGS.jax_distributed or explicit or processes.in_job():
        processes.join_job(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if FLAGS.vmap_trials:
        with open(FLAGS.vmap_trials) as listing:
            trials = json.load(listing)
        configs = [sweeps.apply_overrides(FLAGS.config, t["overrides"]) for t in trials]
        results = train_trials(configs, [t["workdir"] for t in trials])
        if None in results:
            print(
                f"error: {results.count(None)} of {len(results)} vmapped trials stopped on "
                f"non-finite values (see their {FAILED_FILE})",
                file=sys.stderr,
            )
            return SOME_TRIALS_FAILED
        metrics = results
    else:
        metrics = train_and_evaluate(
            FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change
        )
    if metrics:  # empty when stopped by SIGTERM: no eval then, the run resumes later
        logging.info("final eval: %s", metrics)
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
