from jaxdl.train.progress import Progress, format_duration


def test_format_duration():
    assert format_duration(59.9) == "0m59s"
    assert format_duration(3725) == "1h02m05s"


def test_progress_line_measures_rate_and_eta_since_the_last_line():
    progress = Progress(
        total_steps=1000, items_per_step=32, unit="ex", max_seconds=0, step=100, elapsed_s=10.0
    )
    line = progress.line(300, 30.0, {"loss": 0.5})
    # 200 steps in 20 s: 10 steps/s, 320 examples/s, 700 steps left -> 70 s.
    assert line.startswith("step 300/1000 (30%) 10.00 steps/s 320 ex/s ETA 1m10s")
    assert line.endswith("| loss=0.5")


def test_progress_eta_is_capped_by_the_time_budget():
    progress = Progress(
        total_steps=1000, items_per_step=1, unit="ex", max_seconds=40, step=0, elapsed_s=0.0
    )
    assert "ETA 0m15s" in progress.line(10, 25.0, {})  # 2475 s of steps left, 15 s of budget


def test_excluded_seconds_leave_the_rate_to_training_alone():
    progress = Progress(
        total_steps=1000, items_per_step=64, unit="tok", max_seconds=0, step=0, elapsed_s=0.0
    )
    progress.exclude(5.0)  # an eval between two lines
    assert "10.00 steps/s 640 tok/s" in progress.line(100, 15.0, {})


def test_lines_with_no_time_passed_keep_the_rate_and_measure_over_both():
    progress = Progress(
        total_steps=100, items_per_step=1, unit="ex", max_seconds=0, step=0, elapsed_s=0.0
    )
    assert "10.00 steps/s" in progress.line(10, 1.0, {})
    assert "10.00 steps/s 10 ex/s ETA 0m08s" in progress.line(11, 1.0, {})  # same clock value
    assert "15.00 steps/s" in progress.line(13, 1.2, {})  # 3 steps in 0.2 s, since step 10
