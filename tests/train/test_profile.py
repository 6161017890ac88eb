"""The profiler hook: a trace of the window's steps with the step's phases named."""

import pytest

from jaxdl.errors import ConfigError
from jaxdl.train.hooks import parse_profile
from tests.train.test_train_e2e import TINY, assert_ok


def test_the_window_is_start_stop():
    assert parse_profile("") is None
    assert parse_profile("5:8") == (5, 8)
    for bad in ("5", "8:5", "a:b", "-1:3", "3:3"):
        with pytest.raises(ConfigError, match=r"train\.profile"):
            parse_profile(bad)


@pytest.mark.slow
def test_a_profile_window_writes_a_trace_of_the_named_phases(launch, synthetic_data_dir, tmp_path):
    workdir = tmp_path / "run"
    result = launch(
        TINY,
        f"--workdir={workdir}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.train.profile=5:8",
        "--config.train.log_every=2",
    )
    assert_ok(result)
    assert (
        "profiling steps 6..8" in result.stderr and "profile of steps 6..8 written" in result.stderr
    )
    (trace,) = workdir.glob("profile/plugins/profile/*/*.xplane.pb")
    content = trace.read_bytes()
    for phase in (b"forward", b"backward", b"optimizer"):
        assert phase in content, phase
    # The progress line right after the window still measures the steps alone.
    line = next(x for x in result.stderr.splitlines() if x.startswith("step 10/20"))
    rate = float(line.split(" steps/s")[0].split()[-1])
    assert rate > 0 and "ETA ?" not in line
