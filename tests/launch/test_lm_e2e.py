"""End-to-end language-model runs: resume, devices, the clipping pair, sampling."""

import math

import chex
import jax
import numpy as np
import pytest

from jaxdl.train import read_metrics
from tests.conftest import ROOT, run_script
from tests.train.test_train_e2e import assert_ok, keep_checkpoints_up_to, saved_state, saved_steps

pytestmark = pytest.mark.slow
TINY = f"--config={ROOT}/experiments/shakespeare_lstm_tiny.py"


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    """A 30,000-character text with structure to learn, where tinyshakespeare lives."""
    root = tmp_path_factory.mktemp("text")
    (root / "tinyshakespeare").mkdir()
    rng = np.random.default_rng(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "\n"]
    text = " ".join(rng.choice(words, 7000))[:30_000]
    (root / "tinyshakespeare" / "input.txt").write_text(text)
    return root


def lm_run(launch, workdir, text_dir, *overrides, **kwargs):
    return launch(
        TINY, f"--workdir={workdir}", f"--config.data.data_dir={text_dir}", *overrides, **kwargs
    )


def strip_time(rows):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_resume_mid_epoch_continues_the_same_streams(launch, text_dir, tmp_path):
    args = (
        "--config.train.num_steps=12",
        "--config.train.log_every=1",
        "--config.train.eval_every=6",
        "--config.train.checkpoint_every=5",
    )
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert_ok(lm_run(launch, straight, text_dir, *args))
    assert_ok(lm_run(launch, resumed, text_dir, *args))
    keep_checkpoints_up_to(resumed, 5)
    result = lm_run(launch, resumed, text_dir, *args)
    assert_ok(result)
    assert "resumed from step 5" in result.stderr
    rows = strip_time(read_metrics(straight))
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows == strip_time(read_metrics(resumed))  # losses and evals, bit-equal
    final = saved_state(straight, 12)
    chex.assert_trees_all_equal(final, saved_state(resumed, 12))  # params, carry, ...
    # The carry is checkpointed: mid-epoch it is the streams' state, not zeros.
    assert all(np.any(leaf) for leaf in jax.tree.leaves(final["carry"]))
    assert math.isfinite(rows[-1]["eval/loss"])
    assert rows[-1]["eval/bits_per_char"] == pytest.approx(rows[-1]["eval/loss"] / math.log(2))
    vocab = (straight / "run.json").read_text()
    assert '"vocab": "\\n abehinoqrstu"' in vocab  # saved with the run


def test_two_devices_follow_the_one_device_trajectory(launch, text_dir, tmp_path):
    args = (
        "--config.train.num_steps=8",
        "--config.train.log_every=1",
        "--config.optimizer.name=momentum",
        "--config.optimizer.learning_rate=0.5",
    )
    runs = {}
    for devices in (1, 2):
        workdir = tmp_path / f"devices{devices}"
        assert_ok(lm_run(launch, workdir, text_dir, *args, devices=devices))
        runs[devices] = read_metrics(workdir)
    for one, two in zip(runs[1], runs[2], strict=True):
        for key in ("train/loss", "train/grad_norm", "eval/loss"):
            if key in one:
                assert two[key] == pytest.approx(one[key], rel=1e-5), key


def test_without_clipping_the_rnn_stops_at_nan_and_with_clipping_it_learns(launch, tmp_path):
    """The clipping pair of experiments/, on the real text, shortened."""
    noclip = tmp_path / "noclip"
    result = launch(
        f"--config={ROOT}/experiments/shakespeare_rnn_noclip.py",
        f"--workdir={noclip}",
        "--config.train.num_steps=60",
        plot=True,
    )
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: non-finite train/")
    failed_at = int(error.split(" at step ")[1].split(";")[0])
    kept = saved_steps(noclip)
    assert kept and kept[-1] < failed_at and f"last good checkpoint: step {kept[-1]}" in error
    grad_norms = [float(r["train/grad_norm"]) for r in read_metrics(noclip)]
    assert not math.isfinite(grad_norms[-1]) and (noclip / "metrics.png").is_file()

    clip = tmp_path / "clip"
    assert_ok(
        launch(
            f"--config={ROOT}/experiments/shakespeare_rnn_clip.py",
            f"--workdir={clip}",
            "--config.train.num_steps=60",
            "--config.train.eval_every=60",
        )
    )
    rows = read_metrics(clip)
    assert len(rows) == 60 and all(math.isfinite(float(r["train/grad_norm"])) for r in rows)
    losses = [r["train/loss"] for r in rows]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3  # it learns


def test_sample_launcher_is_seeded(launch, text_dir, tmp_path):
    workdir = tmp_path / "run"
    assert_ok(lm_run(launch, workdir, text_dir))

    def sample(*flags):
        return run_script("launch/sample.py", f"--workdir={workdir}", *flags, timeout=120)

    first = sample("--prompt=to be", "--length=60", "--seed=3")
    assert_ok(first)
    text = first.stdout.rstrip("\n")
    assert text.startswith("to be") and len(text) == len("to be") + 60
    assert set(text) <= set("\n abehinoqrstu")
    assert sample("--prompt=to be", "--length=60", "--seed=3").stdout == first.stdout
    assert sample("--prompt=to be", "--length=60", "--seed=4").stdout != first.stdout
    bad = sample("--prompt=XYZ")
    assert bad.returncode == 1 and "not in the vocabulary: 'XYZ'" in bad.stderr
    not_a_run = run_script("launch/sample.py", f"--workdir={tmp_path}", timeout=120)
    assert not_a_run.returncode == 1 and "is not a run directory" in not_a_run.stderr
