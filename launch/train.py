"""Train an experiment: python launch/train.py --config=experiments/x.py --workdir=DIR

Override any config value with --config.a.b=value. Re-running with the same workdir
resumes from its newest checkpoint. Bad flags, configs and data exit non-zero with one
line on stderr.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (multi-host).")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _quiet_logs() -> None:
    """Short log lines, without the per-save chatter of orbax."""
    FLAGS.showprefixforinfo = False
    logging.get_absl_handler().addFilter(lambda record: "/orbax/" not in record.pathname)


def main(argv):
    _quiet_logs()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax

    from jaxdl.errors import UserError
    from jaxdl.train import train_and_evaluate

    if FLAGS.jax_distributed:
        jax.distributed.initialize()
    try:
        metrics = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    logging.info("final eval: %s", metrics)
    return 0


if __name__ == "__main__":
    app.run(main)
