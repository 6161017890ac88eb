"""Data sources of your own: image folders, text files, document tables and ArrayRecord
sets, on data generated here. Batch k stays a function of (seed, k) whatever the process
and worker count; bad data is one line naming the file."""

import contextlib
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxdl import configs, data, registry
from jaxdl.data import images, synthetic
from jaxdl.errors import ConfigError, DataError
from jaxdl.train import read_metrics
from tests.conftest import ROOT, run_launcher, run_script
from tests.train.test_train_e2e import assert_ok, keep_checkpoints_up_to, wait_for_rows


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return synthetic.write_image_folder(root, {"train": 8, "test": 3})


def folder_config(root, **changes):
    values = dict(path=str(root), image_size=16, batch_size=6, eval_batch_size=4) | changes
    return configs.section("data", "image_folder", **values)


def test_an_image_folder_reads_any_size_and_mode_as_fixed_arrays(image_folder):
    inputs = data.build_input(folder_config(image_folder), seed=0)
    assert inputs.info["class_names"] == ["cat", "dog", "eel"]
    assert inputs.info["image_shape"] == [16, 16, 3]
    assert (inputs.info["num_train"], inputs.info["num_eval"]) == (24, 9)
    batch = inputs.train.batch(0)
    assert batch["image"].shape == (6, 16, 16, 3) and batch["image"].dtype == np.uint8
    every = data.read_all(inputs.eval)
    assert every["label"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # sorted classes and files
    # Eval: the shorter side resized to 16, the centre cut out (checked against PIL).
    path = sorted((image_folder / "test" / "dog").iterdir())[1]
    with Image.open(path) as original:
        rgb = original.convert("RGB")
    width, height = rgb.size
    scale = 16 / min(width, height)
    size = (max(16, round(width * scale)), max(16, round(height * scale)))
    left, top = (size[0] - 16) // 2, (size[1] - 16) // 2
    expected = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR))[
        top : top + 16, left : left + 16
    ]
    np.testing.assert_array_equal(every["image"][4], expected)
    grey = data.build_input(folder_config(image_folder, channels=1), seed=0)
    assert grey.train.batch(0)["image"].shape == (6, 16, 16, 1)


def test_random_crops_follow_seed_and_batch_and_not_the_process_count(image_folder):
    config = folder_config(image_folder, random_crop=True)
    batches = data.build_input(config, seed=3).train
    first, again = batches.batch(5), data.build_input(config, seed=3).train.batch(5)
    np.testing.assert_array_equal(first["image"], again["image"])
    epoch_later = batches.batch(5 + batches.batches_per_epoch)  # same rows, new crops
    assert not np.array_equal(np.sort(first["label"]), np.sort(epoch_later["label"])) or (
        not np.array_equal(first["image"], epoch_later["image"])
    )
    halves = [data.build_input(config, 3, i, 2).train.batch(5)["image"] for i in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), first["image"])
    centred = data.build_input(folder_config(image_folder), seed=3).train.batch(5)
    np.testing.assert_array_equal(centred["label"], first["label"])
    assert not np.array_equal(centred["image"], first["image"])


def test_worker_processes_give_the_batches_of_the_source(image_folder):
    batches = data.build_input(folder_config(image_folder, random_crop=True), seed=1).train
    prefetch = data.Prefetcher(batches, start=3, depth=2, workers=2)
    try:
        made = [next(prefetch) for _ in range(4)]
    finally:
        prefetch.close()
    for index, batch in made:
        expected = batches.batch(index)
        for name in expected:
            np.testing.assert_array_equal(batch[name], expected[name])
    assert [index for index, _ in made] == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "is not a folder"),
        ("empty_class", "holds no images"),
        ("no_classes", "has no class folders"),
        ("unknown_class", "is not one of the training classes"),
    ],
)
def test_a_bad_folder_is_one_line_naming_it(tmp_path, damage, message):
    root = synthetic.write_image_folder(tmp_path / "set", {"train": 2, "test": 1})
    if damage == "missing":
        root = tmp_path / "nowhere"
    elif damage == "empty_class":
        for image in (root / "test" / "dog").iterdir():
            image.unlink()
    elif damage == "no_classes":
        for folder in (root / "test").iterdir():
            for image in folder.iterdir():
                image.unlink()
            folder.rmdir()
    else:
        (root / "test" / "cow").mkdir()
    with pytest.raises(DataError, match=message) as error:
        data.build_input(folder_config(root, batch_size=3), seed=0)
    assert "\n" not in str(error.value)


def test_a_truncated_image_is_named_when_read(tmp_path):
    root = synthetic.write_image_folder(tmp_path / "set", {"train": 2, "test": 1})
    bad = sorted((root / "train" / "eel").iterdir())[1]
    bad.write_bytes(bad.read_bytes()[:40])
    inputs = data.build_input(folder_config(root, batch_size=6, hold_mb=0), seed=0)  # streamed
    with pytest.raises(DataError, match="not a readable image") as error:
        inputs.train.batch(0)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DataError, match="not a readable image"):  # held: read at the start
        data.build_input(folder_config(root, batch_size=6), seed=0)


def test_a_small_source_is_held_in_memory_unless_it_crops_at_random(image_folder):
    streamed = data.build_input(folder_config(image_folder, hold_mb=0), seed=0)
    held = data.build_input(folder_config(image_folder), seed=0)  # 33 images, well under
    assert isinstance(held.train.source, data.ArraySource)
    assert isinstance(held.eval, data.ArraySource)
    assert isinstance(streamed.train.source, images.ImageFileSource)
    for name in ("image", "label"):
        np.testing.assert_array_equal(held.train.batch(7)[name], streamed.train.batch(7)[name])
    one_image = 16 * 16 * 3 + 4  # bytes of an example: pixels and an int32 label
    tight = folder_config(image_folder, hold_mb=(24 * one_image - 1) / 2**20)
    assert isinstance(data.build_input(tight, 0).train.source, images.ImageFileSource)
    cropping = data.build_input(folder_config(image_folder, random_crop=True), seed=0)
    assert isinstance(cropping.train.source, images.ImageFileSource)
    # Worker processes only where batches are decoded: slicing held arrays needs none.
    assert not data.decodes(held.train) and data.decodes(streamed.train)
    assert data.decodes(data.StackedBatches([held.train, streamed.train]))
    assert isinstance(cropping.eval, data.ArraySource)
    held_in_workers = data.pipeline.read_all(streamed.eval, workers=2)
    np.testing.assert_array_equal(held_in_workers["image"], held.eval.arrays["image"])


def test_fit_takes_grey_palette_and_transparent_images():
    for mode in ("L", "P", "RGBA", "LA", "I;16"):
        image = Image.new(mode, (30, 12))
        for channels in (1, 3):
            converted = images.as_image(np.asarray(image.convert("RGB")), channels)
            assert images.fit(converted, 8).shape == (8, 8, channels)


# ---- Text files ----------------------------------------------------------------------------


def test_text_files_read_a_file_or_a_folder_in_order(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "b.txt").write_text("world! ", encoding="utf-8")
    (tmp_path / "corpus" / "a.txt").write_text("héllo ", encoding="utf-8")
    config = configs.section("data", "text_files", path=str(tmp_path / "corpus"))
    config.update(batch_size=1, eval_batch_size=1, window=2, eval_fraction=0.2)
    inputs = data.build_input(config, seed=0)
    vocab = data.CharVocab(inputs.info["vocab"])
    assert vocab.decode(inputs.train.tokens) == "héllo worl"  # a.txt first; the tail is eval
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    config.path = str(tmp_path / "latin1.txt")
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 3\)") as error:
        data.build_input(config, seed=0)
    assert "latin1.txt" in str(error.value)


def test_a_large_text_is_memory_mapped_with_the_same_batches(tmp_path, monkeypatch):
    from jaxdl.datasets import text_sets

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(synthetic.text(5000) + "ünï", encoding="utf-8")
    config = configs.section("data", "text_files", path=str(corpus), batch_size=4, window=8)
    config.eval_batch_size = 2
    in_memory = data.build_input(config, seed=1)
    monkeypatch.setattr(text_sets, "IN_MEMORY_BYTES", 100)
    monkeypatch.setattr(text_sets, "_PIECE", 7)  # characters cut between pieces
    monkeypatch.setenv(text_sets.TOKEN_CACHE_ENV, str(tmp_path / "cache"))
    for _ in range(2):  # written to the cache, then read from it
        mapped = data.build_input(config, seed=1)
        assert isinstance(mapped.train.tokens, np.memmap)
        assert mapped.info["vocab"] == in_memory.info["vocab"]
        for k in (0, 3, mapped.train.batches_per_epoch + 2):
            for name, value in in_memory.train.batch(k).items():
                np.testing.assert_array_equal(mapped.train.batch(k)[name], value)
        for name, value in data.read_all(in_memory.eval).items():
            np.testing.assert_array_equal(data.read_all(mapped.eval)[name], value)
    assert len(list((tmp_path / "cache").glob("*.tokens"))) == 1
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"abcdefghij\xff")
    config.path = str(broken)
    with pytest.raises(DataError, match=r"broken.txt: not UTF-8 text \(byte 10\)"):
        data.build_input(config, seed=1)


# ---- Document tables -----------------------------------------------------------------------


def table_config(path, **changes):
    values = dict(path=str(path), batch_size=4, eval_batch_size=4, min_count=1) | changes
    return configs.section("data", "document_table", **values)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_document_table_is_split_and_encoded(tmp_path, suffix):
    rows = synthetic.document_rows(40)
    path = synthetic.write_document_table(tmp_path / f"reviews{suffix}", rows)
    inputs = data.build_input(table_config(path, max_sentences=3, max_words=5), seed=0)
    assert inputs.info["class_names"] == ["neg", "pos"]
    assert (inputs.info["num_train"], inputs.info["num_eval"]) == (36, 4)
    evals = data.read_all(inputs.eval)
    assert evals["tokens"].shape == (4, 3, 5)
    held_out = np.sort(np.random.default_rng(0).permutation(40)[:4])
    expected = [["neg", "pos"].index(rows[i]["label"]) for i in held_out]
    assert evals["label"].tolist() == expected
    train, _, _, _ = data.inputs.read_documents(table_config(path))
    assert len(train) == 36 and train[0].sentences[0][0] == rows[0]["text"].split()[0].lower()


def test_a_document_folder_reads_each_split_and_numbers_sort_by_value(tmp_path):
    rows = [{"text": f"Text {i}.", "stars": str(i % 3 * 5)} for i in range(12)]
    synthetic.write_document_table(tmp_path / "train.csv", rows)
    synthetic.write_document_table(tmp_path / "test.jsonl", rows[:4])
    inputs = data.build_input(table_config(tmp_path, label_column="stars"), seed=0)
    assert inputs.info["class_names"] == ["0", "5", "10"]
    assert inputs.info["num_eval"] == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("review,label\nfine,pos\n", "no column 'text'"),
        ("text,label\nfine,\n", "row 2: no value in column 'label'"),
        (b"text,label\ncaf\xe9,pos\n", "not UTF-8"),
    ],
)
def test_a_bad_table_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message) as error:
        data.build_input(table_config(path, batch_size=1), seed=0)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


# ---- Registration ----------------------------------------------------------------------------


def test_a_new_source_is_one_module_with_its_own_fields(tmp_path, monkeypatch):
    """A regression source of a user's package: float targets, no class names."""
    (tmp_path / "my_sources.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from jaxdl import data, registry

            @registry.source("noisy_line", yields=("x", "y"), provides=("num_inputs",),
                             num_examples=64, noise=0.1)
            def build(cfg, seed, process_index, process_count):
                rng = np.random.default_rng(0)
                x = rng.normal(size=(cfg.num_examples, 1)).astype(np.float32)
                y = (2 * x[:, 0] + cfg.noise * rng.normal(size=len(x))).astype(np.float32)
                source = data.ArraySource({"x": x, "y": y})
                return data.Input(
                    train=data.ShuffledBatches(source, cfg.batch_size, seed,
                                               process_index, process_count),
                    eval=source, info={"name": cfg.name, "origin": "generated",
                    "num_train": len(x), "num_eval": len(x), "num_inputs": 1},
                    items_per_batch=cfg.batch_size, item_unit="ex")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("my_sources")
    config = configs.base_config()
    configs.switch(config, "data", "noisy_line")
    assert config.data.noise == 0.1 and config.data.batch_size == 128  # the recipe's kept
    config.data.batch_size = 16
    batch = data.build_input(config.data, seed=0).train.batch(0)
    assert set(batch) == {"x", "y"} and batch["y"].dtype == np.float32
    assert registry.lookup("data", "noisy_line").provides == ("num_inputs",)
    with pytest.raises(ConfigError, match=r"unknown config key data\.path"):
        configs.resolve_section("data", {**config.data.to_dict(), "path": "x"})


def test_an_old_runs_data_section_still_resolves():
    saved = {
        "name": "tiny_shakespeare",
        "source": "auto",
        "data_dir": "",
        "train_split": "train",
        "eval_split": "test",
        "batch_size": 8,
        "eval_batch_size": 8,
        "prefetch": 2,
        "window": 16,
        "eval_fraction": 0.1,
    }  # config.json of a run before sources
    resolved = configs.resolve_section("data", saved, saved=True)
    assert "train_split" not in resolved and resolved.window == 16 and resolved.workers == 0


# ---- End to end --------------------------------------------------------------------------


def folder_args(root) -> list[str]:
    """The tiny CNN on an image folder, through the launcher."""
    return [
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        "--config.data.name=image_folder",
        f"--config.data.path={root}",
        "--config.data.image_size=16",
        "--config.data.batch_size=6",
        "--config.data.eval_batch_size=9",
    ]


@pytest.mark.slow
def test_train_from_a_folder_then_from_its_prepared_array_records(tmp_path, image_folder):
    common = folder_args(image_folder)
    folder_run = tmp_path / "folder"
    assert_ok(run_launcher(*common, f"--workdir={folder_run}", "--config.train.num_steps=8"))
    prepared = tmp_path / "prepared"
    assert_ok(run_script("launch/prepare_data.py", *common, f"--out={prepared}"))
    folder = data.build_input(folder_config(image_folder), 0)
    records = data.build_input(
        configs.section("data", "array_record", path=str(prepared), batch_size=6), 0
    )
    for name in ("image", "label"):
        np.testing.assert_array_equal(
            data.read_all(records.eval)[name], data.read_all(folder.eval)[name]
        )
        np.testing.assert_array_equal(records.train.batch(2)[name], folder.train.batch(2)[name])
    assert records.info["class_names"] == folder.info["class_names"]
    record_run = tmp_path / "records"
    args = [a for a in common if a.startswith(("--config=", "--config.data.b", "--config.data.e"))]
    result = run_launcher(
        *args,
        f"--workdir={record_run}",
        "--config.train.num_steps=8",
        "--config.data.name=array_record",
        f"--config.data.path={prepared}",
    )
    assert_ok(result)
    # The same batches, so the same run: metrics equal row for row.
    assert read_metrics(record_run)[-1]["train/loss"] == read_metrics(folder_run)[-1]["train/loss"]


@pytest.mark.slow
def test_train_an_lm_on_a_text_file_and_a_classifier_on_a_csv(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(synthetic.text(6000), encoding="utf-8")
    lm = tmp_path / "lm"
    assert_ok(
        run_launcher(
            f"--config={ROOT}/experiments/shakespeare_lstm_tiny.py",
            f"--workdir={lm}",
            "--config.data.name=text_files",
            f"--config.data.path={corpus}",
            "--config.train.num_steps=6",
        )
    )
    table = synthetic.write_document_table(tmp_path / "reviews.csv", synthetic.document_rows(60))
    han = tmp_path / "han"
    assert_ok(
        run_launcher(
            f"--config={ROOT}/experiments/polarity_han_tiny.py",
            f"--workdir={han}",
            "--config.data.name=document_table",
            f"--config.data.path={table}",
            "--config.train.num_steps=6",
        )
    )
    for run in (lm, han):
        assert any("eval/loss" in row for row in read_metrics(run))


@pytest.mark.slow
def test_bad_data_through_the_launcher_is_one_line_and_exit_1(tmp_path):
    """A missing folder, and an image found damaged by a worker process mid-run."""
    root = synthetic.write_image_folder(tmp_path / "set", {"train": 20, "test": 2})
    bad = sorted((root / "train" / "dog").iterdir())[5]
    bad.write_bytes(bad.read_bytes()[:50])
    missing = run_launcher(*folder_args(tmp_path / "nowhere"), f"--workdir={tmp_path / 'a'}")
    damaged = run_launcher(
        *folder_args(root),
        f"--workdir={tmp_path / 'b'}",
        "--config.data.hold_mb=0",
        "--config.data.workers=1",
        "--config.train.num_steps=30",
    )
    for result, line in ((missing, "error: data.path="), (damaged, f"error: {bad}: not a")):
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith(line)
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_streamed_folder_with_random_crops_in_workers_resumes_bit_equal(tmp_path, image_folder):
    """Batch k = f(seed, k) through worker processes: a run killed after step 5 (its
    later checkpoints gone) and resumed in a new process with another worker count
    computes every row of the straight run."""
    common = [
        *folder_args(image_folder),
        "--config.data.random_crop=True",
        "--config.data.hold_mb=0",
        "--config.train.num_steps=10",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=5",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = run_launcher(*common, f"--workdir={straight}", "--config.data.workers=2")
    assert_ok(result)
    assert "leaked" not in result.stderr  # (grain's shared memory of batches in flight)
    assert_ok(run_launcher(*common, f"--workdir={resumed}", "--config.data.workers=1"))
    keep_checkpoints_up_to(resumed, 5)
    result = run_launcher(*common, f"--workdir={resumed}")  # workers=0 this time
    assert_ok(result)
    assert "resumed from step 5" in result.stderr
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]
    assert strip(read_metrics(straight)) == strip(read_metrics(resumed))


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_worker_processes_die_with_a_killed_trainer(tmp_path, image_folder):
    workdir = tmp_path / "run"
    process = run_launcher(
        *folder_args(image_folder),
        f"--workdir={workdir}",
        "--config.data.hold_mb=0",
        "--config.data.workers=2",
        "--config.train.num_steps=1000000",
        "--config.train.log_every=1",
        wait=False,
    )
    wait_for_rows(workdir)
    workers = children(process.pid)
    assert len(workers) >= 2  # grain's workers (and multiprocessing's resource tracker)
    process.kill()
    process.wait(timeout=30)
    deadline = time.time() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_the_sample_for_a_data_dependent_start_is_bounded_and_read_only_if_used(
    image_folder, monkeypatch
):
    inputs = data.build_input(folder_config(image_folder, hold_mb=0), seed=0)
    read = []
    original = images.ImageFileSource.example
    monkeypatch.setattr(
        images.ImageFileSource,
        "example",
        lambda self, index, draw: read.append(index) or original(self, index, draw),
    )
    monkeypatch.setattr(data.inputs, "INIT_SAMPLE_EXAMPLES", 5)
    sample = inputs.train_sample()
    assert read == []  # a task that reads nothing (most) costs no pass over the data
    assert sample["image"].shape == (5, 16, 16, 3) and len(read) == 5
    assert sample["label"].shape == (5,) and len(read) == 5  # read once
    rows = np.sort(np.random.default_rng(0).choice(24, 5, replace=False))
    assert read == rows.tolist()  # the same rows every run
