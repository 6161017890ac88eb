"""What every launcher shares (imported by the scripts beside it)."""

import functools
import json
import sys
import traceback
import warnings
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

flags.DEFINE_string(
    "compile_cache",
    None,
    "Persistent XLA compilation cache: a directory, or 'off' (default: $JAXDL_COMPILE_CACHE, "
    "else ~/.cache/jaxdl/xla; see jaxdl/train/compile_cache.py).",
)


def _quiet_checkpoint_noise(unraisable) -> None:
    """sys.unraisablehook without the noise a failed save or restore leaves behind (orbax
    coroutines never awaited, tensorstore callbacks reaching orbax's closed event loop):
    the error or warning line the trainer prints says it all."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    if _names_orbax((type(error), error, unraisable.exc_traceback)):
        return
    sys.__unraisablehook__(unraisable)


def _noise(record) -> bool:
    """orbax's own log lines, asyncio's that name orbax's coroutines or run through them
    (tasks and gathered futures of a failed save or restore: the trainer's line says
    which and why; reads of a damaged checkpoint name none, train/checkpoint.py drops
    those), urllib3's retries of a TFDS download (TFDS's download threads retry on after
    the error line that says why), and JAX's note that it found no TPU while probing for
    one (only where JAX_PLATFORMS names no platform: a TPU asked for that fails is an
    error, not this line)."""
    if "/orbax/" in record.pathname or record.name.startswith("urllib3"):
        return True
    if record.name.startswith("jax") and record.getMessage().startswith(_NO_TPU):
        return True
    return record.name == "asyncio" and (
        "/orbax/" in record.getMessage() or _names_orbax(record.exc_info)
    )


def _names_orbax(exc_info) -> bool:
    """Whether an exception's traceback runs through orbax (asyncio's 'exception was
    never retrieved' of orbax's gathered writes names orbax only there)."""
    if not exc_info or exc_info[2] is None:
        return False
    return any("/orbax/" in frame.filename for frame in traceback.extract_tb(exc_info[2]))


_NO_TPU = "Unable to initialize backend 'tpu'"


def tool_main(main):
    """Wraps `main()` for absl's app.run: stray arguments are a usage error, orbax's
    per-save log lines are filtered out, info lines are short in every launcher (absl's
    prefix only on warnings and errors), and a UserError (bad flags, config or data)
    ends the program with one line on stderr and exit status 1. In a multi-process job,
    a collective that failed because another process is gone ends this one at once,
    without a traceback: one line (none under launch/multiprocess.py, whose line says
    which process died), exit status 1, and no wait in JAX's shutdown for the dead one."""

    @functools.wraps(main)
    def run(argv: list[str]) -> int:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        sys.unraisablehook = _quiet_checkpoint_noise
        # orbax's coroutines of a failed save, collected at exit, warn that they were never
        # awaited (two lines after the run's own error line); jaxdl has no coroutines.
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        logging.get_absl_handler().addFilter(lambda record: not _noise(record))
        flags.FLAGS.showprefixforinfo = False
        from jaxdl.errors import UserError
        from jaxdl.train import compile_cache, processes

        cache = compile_cache.enable(flags.FLAGS.compile_cache)
        try:
            code, error = main(), None
        except UserError as e:
            code, error = 1, e
        except Exception as e:
            if not processes.lost_peer(e):
                raise
            if not processes.under_launcher():
                print(
                    f"error: another process of this job is gone ({_first_line(e)}); "
                    "run the job again to resume",
                    file=sys.stderr,
                )
            processes.exit_now(processes.LOST_PEER_EXIT)
        if cache is None:
            logging.info("compile cache: off")
        else:
            logging.info("compile cache %s: %s", cache.directory, cache.summary())
        if error is not None:  # the last line
            print(f"error: {error}", file=sys.stderr)
        return code

    return run


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


class _ExperimentFileParser(ConfigFileFlagParser):
    """An experiment file's config, or a run's config.json (the file, or the run's
    directory), resolved (jaxdl.configs.resolve; a run's as it was trained: keys it
    predates take their legacy values, as run_info.load_run reads it) before the command
    line's overrides apply; `--config.model.name=X` (or task) first switches that section
    to X's registered defaults, so X's own keys can then be overridden. An experiment
    file's folder is put on sys.path (after what is there) before it is loaded, so it
    imports the modules beside it (a model of one's own: `import resmlp`); a run's
    modules recorded in its run.json are imported again (train/run_info.py)."""

    def parse(self, path):
        from jaxdl import configs, registry

        saved = _saved_config(path)
        if saved is None:
            folder = str(Path(path.split(":", 1)[0]).resolve().parent)
            if folder not in sys.path:
                sys.path.append(folder)
        config = super().parse(path) if saved is None else saved
        if not hasattr(config, "unlocked"):  # a file that failed to load: reported later
            return config
        prefix = f"--{self.name}."
        for kind in registry.KINDS:
            name = _flag_value(sys.argv, f"{prefix}{kind}.name")
            if name is not None:
                configs.switch(config, kind, name)
        resolved = configs.resolve(config, saved=saved is not None)
        resolved.lock()
        return resolved


def _saved_config(path: str):
    """The config of a run that `path` names (its config.json, or its directory), with
    tuples where JSON has lists (as experiment files give them); None for a file that
    is not JSON (an experiment file)."""
    import ml_collections

    from jaxdl.errors import ConfigError

    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    elif file.suffix != ".json":
        return None
    try:
        values = json.loads(file.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {file} ({(e.strerror or str(e)).lower()})") from None
    except ValueError as e:
        raise ConfigError(f"{file} is not a run's config.json ({e})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{file} is not a run's config.json (not an object)")
    _import_run_modules(file.parent)
    return ml_collections.ConfigDict(_tuples(values))


def _import_run_modules(workdir: Path) -> None:
    """The modules that registered a run's model, task and data (its run.json's record;
    none where there is no run.json, or an older one)."""
    from jaxdl.train import run_info

    try:
        record = json.loads((workdir / run_info.RUN_INFO_FILE).read_text())
    except (OSError, ValueError):
        return
    if isinstance(record, dict):
        run_info.import_modules(record)


def _tuples(value):
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The last value given as `flag=value` or `flag value` in argv, if any."""
    value = None
    for index, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        elif arg == flag and index + 1 < len(argv):
            value = argv[index + 1]
    return value


def define_step_flag() -> None:
    """--step of the tools that read a run: a checkpoint's step, `best` (the best one kept
    by train.keep_best, as the run's best.json names it), or the newest (the default)."""
    flags.DEFINE_string(
        "step", None, "Checkpoint: a step, or 'best' (train.keep_best); default: the newest."
    )


def define_config_flag(name: str = "config") -> None:
    """--config=experiments/<name>.py[:arg] (or a run's WORKDIR/config.json, or WORKDIR),
    with --config.a.b=v overrides."""
    config_flags.DEFINE_config_file(
        name,
        None,
        "Experiment config file, or a run's config.json (or its workdir).",
        lock_config=True,
    )
    flags.FLAGS[name].parser = _ExperimentFileParser(name=name, lock_config=True)
