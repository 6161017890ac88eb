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

Processes that share the cache (a sweep's slots, a search's workers, test workers,
the processes of a job) write it at the same time. JAX 0.10's LRUCache, without a size
limit (its default, ours), takes no lock and writes an entry in place
(`Path.write_bytes`): a process could read an entry half written, and two writers of one
key (each truncating the file the other writes) could leave it mixed. Entries are
written here to a file of the writer's own and renamed into place whole (`_atomic_put`):
a reader sees no entry or a whole one, and of two writers of a key the last rename wins
(the same program). JAX's other way, a size limit (`jax_compilation_cache_max_size`),
takes a lock file around every read and write and scans the folder at every write.

A cache that cannot be used never stops a launch and says so once: an entry that cannot
be read (truncated, garbled) is removed, its program compiled again and written in its
place, and the first such entry of a launch is one warning line (JAX warned twice a line
for every entry, every launch, and never replaced it); a cache that cannot be written
(read-only) is one warning line at the first program it could not keep (JAX: one a
program). The launcher's last line counts them with the hits and misses.
"""

import contextlib
import os
import threading
from pathlib import Path

import jax
import jaxlib
from absl import logging
from jax._src import compilation_cache as jax_cache  # private: its reads and writes are wrapped
from jax._src import lru_cache  # private: its put is made atomic

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
    """Counts the cache's hits and misses in this process (JAX's monitoring events), and
    the entries it could not read (removed, compiled again) or write."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.counts = {"hits": 0, "misses": 0, "unreadable": 0, "unwritten": 0}
        jax.monitoring.register_event_listener(self._on_event)

    def _on_event(self, event: str, **kwargs) -> None:
        if event in _EVENTS:
            self.counts[_EVENTS[event]] += 1

    def summary(self) -> str:
        """'N hits, M misses' and what could not be read or written, if anything."""
        counts = self.counts
        text = f"{counts['hits']} hits, {counts['misses']} misses"
        if counts["unreadable"]:
            text += f", {counts['unreadable']} unreadable entries compiled again"
        if counts["unwritten"]:
            text += f", {counts['unwritten']} programs not written"
        return text

    def unreadable(self, key: str, error: Exception) -> None:
        """An entry JAX could not read: removed, so the program compiled now replaces it
        (JAX writes no entry whose file exists)."""
        for suffix in ("-cache", "-atime"):  # jax/_src/lru_cache.py's file names
            with contextlib.suppress(OSError):  # read-only: its write fails and says so
                (self.directory / f"{key}{suffix}").unlink(missing_ok=True)
        if not self.counts["unreadable"]:
            logging.warning(
                "compile cache %s: an entry could not be read (%s); unreadable entries are "
                "removed and their programs compiled again",
                self.directory,
                _describe(error),
            )
        self.counts["unreadable"] += 1

    def unwritten(self, error: Exception) -> None:
        if not self.counts["unwritten"]:
            logging.warning(
                "compile cache %s cannot be written (%s): programs compiled in this process "
                "are not kept",
                self.directory,
                _describe(error),
            )
        self.counts["unwritten"] += 1


_current: CacheStats | None = None  # the cache enable() last pointed JAX at


def _describe(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    line = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def _handler(error: Exception) -> CacheStats:
    """The CacheStats that takes a failure of JAX's cache; re-raises the failure where JAX
    is told to raise them or enable() did not run (JAX then warns as it does)."""
    if _current is None or jax.config.jax_raise_persistent_cache_errors:
        raise error
    return _current


def _guard_jax_cache() -> None:
    """Stands in for JAX's cache reads and writes, once a process (jax/_src/compiler.py
    calls them through their module): a failure goes to the current CacheStats."""
    read, exists, write = (
        jax_cache.get_executable_and_time,
        jax_cache.is_executable_in_cache,
        jax_cache.put_executable_and_time,
    )
    if getattr(write, "jaxdl_guard", False):
        return

    def get_executable_and_time(cache_key, *args, **kwargs):
        try:
            return read(cache_key, *args, **kwargs)
        except Exception as e:
            _handler(e).unreadable(cache_key, e)
            return None, None

    def is_executable_in_cache(backend, cache_key):
        try:
            return exists(backend, cache_key)
        except Exception as e:
            _handler(e).unreadable(cache_key, e)
            return False

    def put_executable_and_time(*args, **kwargs):
        try:
            write(*args, **kwargs)
        except Exception as e:
            _handler(e).unwritten(e)

    put_executable_and_time.jaxdl_guard = True
    jax_cache.get_executable_and_time = get_executable_and_time
    jax_cache.is_executable_in_cache = is_executable_in_cache
    jax_cache.put_executable_and_time = put_executable_and_time
    lru_cache.LRUCache.put = _atomic_put(lru_cache.LRUCache.put)


def _atomic_put(put):
    """LRUCache.put writing a new entry of a local cache without a size limit to a file
    of this process and thread, renamed into place whole (see the module doc); `put`
    (JAX's) otherwise."""

    def atomic_put(self, key: str, value: bytes) -> None:
        if self.eviction_enabled or not lru_cache._is_local_filesystem(str(self.path)):
            return put(self, key, value)
        if not key:
            raise ValueError("key cannot be empty")
        entry = Path(str(self.path)) / f"{key}-cache"
        if entry.exists():
            return None
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(value)
            tmp.replace(entry)
        finally:
            tmp.unlink(missing_ok=True)
        return None

    return atomic_put


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
    global _current
    _current = CacheStats(directory)
    _guard_jax_cache()
    return _current
