"""JAX's persistent compilation cache, as every launcher uses it.

Programs compiled once (the step, eval, init of an experiment) are written to a cache
directory and read back by the next process that compiles the same program: a relaunch,
a resumed run, a sweep's trials, the test suite's many tiny runs. JAX keys each entry by
the program, the jaxlib version, the backend and its version, the XLA flags and the
compile options, so an entry is never used by another version or device; the directory
is also per jax/jaxlib version, so clearing old versions is `rm -r` of their folders.

Where: `--compile_cache=DIR` on any launcher, else $JAXDL_COMPILE_CACHE, else
$XDG_CACHE_HOME/jaxdl/xla (default ~/.cache/jaxdl/xla); `off` (either way) disables it.

On GPUs the same folder also keeps XLA's own per-fusion autotuning results
(`xla_gpu_per_fusion_autotune_cache_dir/`: JAX's default for
`jax_persistent_cache_enable_xla_caches`), so a program that misses the cache (another
trial count, another batch shape) skips the autotuning of the fusions it shares with one
compiled before. XLA's kernel cache stays off as in JAX (its kernel names clashed with
the program cache, jax-ml/jax#22899); JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES=all turns
it on. bench/device_check.py measures the cold and warm launch on a GPU.
"""

import os
from pathlib import Path

import jax
import jaxlib
from absl import logging

ENV = "JAXDL_COMPILE_CACHE"
OFF = "off"
_EVENTS = {
    "/jax/compilation_cache/cache_hits": "hits",
    "/jax/compilation_cache/cache_misses": "misses",
}


def default_root() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "jaxdl" / "xla"


def cache_dir(setting: str | None = None) -> Path | None:
    """The cache directory a setting (flag value) names; None when it is off."""
    setting = setting or os.environ.get(ENV) or str(default_root())
    if setting == OFF:
        return None
    return Path(setting).expanduser() / f"jax-{jax.__version__}-jaxlib-{jaxlib.__version__}"


class CacheStats:
    """Counts the cache's hits and misses in this process (JAX's monitoring events)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.counts = {"hits": 0, "misses": 0}
        jax.monitoring.register_event_listener(self._on_event)

    def _on_event(self, event: str, **kwargs) -> None:
        if event in _EVENTS:
            self.counts[_EVENTS[event]] += 1


def enable(setting: str | None = None) -> CacheStats | None:
    """Points JAX at the cache directory (before anything is compiled); every program JAX
    compiles is written, however fast it compiled (eager single ops too, a few kilobytes
    each): a threshold on compile time made the next launch miss any program that had
    compiled just under it on a loaded machine. A setting given here also goes to
    the environment, so the processes this one starts (a sweep's trials, a job's
    processes) use the same cache. Returns the counter of hits and misses, or None when
    the cache is off."""
    if setting:
        os.environ[ENV] = setting
    directory = cache_dir(setting)
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        logging.warning("compile cache %s not usable (%s): off", directory, e.strerror)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return CacheStats(directory)
