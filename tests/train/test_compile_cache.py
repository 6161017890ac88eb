"""The persistent compilation cache of the launchers: written on the first launch, read
on the second, left alone when off."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdl.train import compile_cache
from tests.train.test_reliability import launch_after_mount, needs_mounts
from tests.train.test_train_e2e import TINY, assert_ok


def cache_line(stderr: str) -> str:
    """The launcher's last line on the cache: its counts, or that it was off."""
    counts = lambda x: " hits, " in x or x.endswith("compile cache: off")
    (line,) = [x for x in stderr.splitlines() if "compile cache" in x and counts(x)]
    return line


@pytest.mark.slow
def test_the_second_launch_compiles_nothing(launch, synthetic_data_dir, tmp_path):
    cache = tmp_path / "cache"
    args = (TINY, f"--config.data.data_dir={synthetic_data_dir}", f"--compile_cache={cache}")
    first = launch(*args, f"--workdir={tmp_path / 'a'}", "--config.train.num_steps=2")
    assert_ok(first)
    assert " 0 hits" in cache_line(first.stderr) and " 0 misses" not in cache_line(first.stderr)
    second = launch(*args, f"--workdir={tmp_path / 'b'}", "--config.train.num_steps=2")
    assert_ok(second)
    assert cache_line(second.stderr).endswith(" 0 misses")  # every program came from the cache
    assert " 0 hits" not in cache_line(second.stderr)
    (versioned,) = cache.iterdir()
    assert versioned.name == compile_cache.cache_dir(str(cache)).name  # per jax/jaxlib
    off = launch(
        TINY,
        f"--config.data.data_dir={synthetic_data_dir}",
        "--compile_cache=off",
        f"--workdir={tmp_path / 'c'}",
        "--config.train.num_steps=2",
    )
    assert_ok(off)
    assert cache_line(off.stderr).endswith("compile cache: off")


def cache_lines(stderr: str) -> list[str]:
    """Every line that speaks of the compile cache but the launcher's last count."""
    return [
        x
        for x in stderr.splitlines()
        if ("cache" in x and x != cache_line(stderr)) or "Error reading" in x
    ]


@pytest.fixture
def filled_cache(launch, synthetic_data_dir, tmp_path):
    """(cache folder, launcher args without a workdir) after a 2-step run filled it."""
    cache = tmp_path / "cache"
    args = (
        TINY,
        f"--config.data.data_dir={synthetic_data_dir}",
        f"--compile_cache={cache}",
        "--config.train.num_steps=2",
    )
    assert_ok(launch(*args, f"--workdir={tmp_path / 'fill'}"))
    return compile_cache.cache_dir(str(cache)), args


@pytest.mark.slow
def test_a_damaged_cache_entry_is_one_line_and_replaced(launch, filled_cache, tmp_path):
    """Truncated entries: before, every launch warned twice a line for each (12 lines),
    had 0 hits and never replaced them."""
    folder, args = filled_cache
    entries = sorted(folder.glob("*-cache"))
    for entry in entries:
        entry.write_bytes(b"")  # truncate -s0
    damaged = launch(*args, f"--workdir={tmp_path / 'a'}")
    assert_ok(damaged)
    (line,) = cache_lines(damaged.stderr)
    assert "an entry could not be read" in line and str(folder) in line
    assert "Warning" not in damaged.stderr
    assert f"{len(entries)} unreadable entries compiled again" in cache_line(damaged.stderr)
    healed = launch(*args, f"--workdir={tmp_path / 'b'}")
    assert_ok(healed)
    assert cache_lines(healed.stderr) == []
    assert cache_line(healed.stderr).endswith(" 0 misses")  # every program from the cache


@pytest.mark.slow
@needs_mounts
def test_a_read_only_cache_is_one_line_and_still_hits(filled_cache, tmp_path):
    """Before: 6 lines of 'Error writing ... Read-only file system' for a launch that
    compiled programs the cache did not hold."""
    folder, args = filled_cache
    read_only = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"
    # Another batch size: new programs, which cannot be written; the rest still hit.
    result = launch_after_mount(
        read_only, *args, f"--workdir={tmp_path / 'a'}", "--config.data.batch_size=16"
    )
    assert_ok(result)
    (line,) = cache_lines(result.stderr)
    assert "cannot be written (read-only file system)" in line
    assert "Warning" not in result.stderr
    assert " 0 hits" not in cache_line(result.stderr)
    assert "programs not written" in cache_line(result.stderr)


def test_the_cache_folder_is_per_jax_version(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path))
    assert compile_cache.cache_dir().parent == tmp_path
    assert compile_cache.cache_dir("off") is None
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.cache_dir() is None
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.cache_dir().parent == tmp_path / "xdg" / "jaxdl" / "xla"


FAST_PROGRAM = """
import sys
import jax
from jaxdl.train import compile_cache
compile_cache.enable(sys.argv[1])
jax.jit(lambda x: x + 1)(1.0).block_until_ready()  # compiles in milliseconds
"""


def test_a_program_that_compiles_fast_is_cached_too(tmp_path):
    """However little a program took to compile, the next launch loads it: a threshold
    on compile time made the second launch compile again a program that had compiled
    just under it the first time (a flaky `0 misses` above, on a loaded machine)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", FAST_PROGRAM, str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (versioned,) = tmp_path.iterdir()
    assert [p.name for p in versioned.iterdir() if p.name.startswith("jit__lambda")]


CHILD_SEES = """
import os, subprocess, sys
from jaxdl.train import compile_cache
compile_cache.enable(sys.argv[1])
child = "import os; print(os.environ['JAXDL_COMPILE_CACHE'])"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout)
"""


@pytest.mark.parametrize("setting", ["off", "DIR"])
def test_a_launchers_cache_setting_reaches_the_processes_it_starts(tmp_path, setting):
    setting = str(tmp_path / "cache") if setting == "DIR" else setting
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXDL_COMPILE_CACHE": "elsewhere"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD_SEES, setting], capture_output=True, text=True, env=env
    )
    assert result.stdout.strip() == setting, result.stderr[-3000:]


def test_xla_gpu_autotuning_results_are_kept_in_the_cache_folder(monkeypatch, tmp_path):
    """What JAX passes to XLA once the cache is on: the GPU autotuning cache in our
    versioned folder (read on CPU too: the compile options are the same)."""
    import jax
    from jax._src import compiler

    monkeypatch.setenv(compile_cache.ENV, str(tmp_path))  # restored after the test
    session_cache = jax.config.jax_compilation_cache_dir
    try:
        compile_cache.enable(str(tmp_path))
        options = compiler.get_compile_options(num_replicas=1, num_partitions=1)
    finally:
        jax.config.update("jax_compilation_cache_dir", session_cache)
    debug = options.executable_build_options.debug_options
    expected = compile_cache.cache_dir(str(tmp_path)) / "xla_gpu_per_fusion_autotune_cache_dir"
    assert debug.xla_gpu_per_fusion_autotune_cache_dir == str(expected)


def test_a_cache_entry_is_written_whole_or_not_at_all(monkeypatch, tmp_path):
    """A write cut half way (a full disk, a killed writer) leaves no entry: before, JAX's
    in-place write left the half, which every later launch read as a damaged entry, and
    which another process could read while it was being written."""
    import jax
    from jax._src import lru_cache

    monkeypatch.setenv(compile_cache.ENV, str(tmp_path))
    session_cache = jax.config.jax_compilation_cache_dir
    try:
        compile_cache.enable(str(tmp_path))  # (makes JAX's writes atomic, once a process)
    finally:
        jax.config.update("jax_compilation_cache_dir", session_cache)
    cache = lru_cache.LRUCache(str(tmp_path / "entries"), max_size=-1)

    def cut_write(path, data):
        with Path(str(path)).open("wb") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        for path_type in {Path, type(cache.path)}:  # (JAX's: etils' epath where installed)
            patch.setattr(path_type, "write_bytes", cut_write)
        with pytest.raises(OSError):
            cache.put("key", b"x" * 1000)
    assert cache.get("key") is None and list((tmp_path / "entries").iterdir()) == []
    cache.put("key", b"x" * 1000)
    assert cache.get("key") == b"x" * 1000


FILL = """
import sys, time
from pathlib import Path
import jax
from jaxdl.train import compile_cache
stats = compile_cache.enable(sys.argv[1])
while not Path(sys.argv[2]).exists():  # both writers start filling at once
    time.sleep(0.01)
results = [float(jax.jit(lambda x, k=k: x * k + k)(2.0)) for k in range(int(sys.argv[3]))]
print(results)
print(stats.summary(), file=sys.stderr)
"""


@pytest.mark.slow
def test_two_processes_fill_one_cache_at_once(tmp_path):
    """The two-writer cache test: two processes compile the same programs into one empty
    cache at the same time; both compute right, and a third reads every entry back."""
    cache, go, count = tmp_path / "cache", tmp_path / "go", 40
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    fill = [sys.executable, "-c", FILL, str(cache), str(go), str(count)]
    writers = [
        subprocess.Popen(fill, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    go.touch()
    expected = str([2.0 * k + k for k in range(count)])
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err[-3000:]
        assert out.strip() == expected
    (folder,) = cache.iterdir()
    assert not list(folder.glob("*.tmp"))
    assert len(list(folder.glob("jit__lambda-*-cache"))) == count
    reader = subprocess.run(fill, capture_output=True, text=True, env=env, timeout=300)
    assert reader.stdout.strip() == expected
    summary = reader.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"{count} hits, 0 misses") and "unreadable" not in summary, summary
