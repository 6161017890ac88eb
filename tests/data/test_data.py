import numpy as np
import pytest

from jaxdl import data
from jaxdl.data import sources
from jaxdl.errors import DatasetNotFoundError
from tests.conftest import make_images, write_idx


def arrays(num=100):
    return {"image": np.arange(num)[:, None] * np.ones((1, 3)), "label": np.arange(num)}


def test_idx_round_trip(tmp_path):
    images, _ = make_images(5, seed=3)
    write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(sources.read_idx(tmp_path / "x.gz"), images)


def test_local_copy_loads_from_config_dir(synthetic_data_dir):
    dataset = data.load("fashion_mnist", "train", "local", str(synthetic_data_dir))
    assert dataset.arrays["image"].shape == (640, 28, 28, 1)
    assert dataset.arrays["image"].dtype == np.uint8
    assert dataset.arrays["label"].dtype == np.int32
    assert dataset.num_classes == 10 and dataset.class_names[9] == "Ankle boot"
    expected, labels = make_images(640, seed=0)
    np.testing.assert_array_equal(dataset.arrays["image"][..., 0], expected)
    np.testing.assert_array_equal(dataset.arrays["label"], labels)


def test_env_variable_names_the_local_dir(synthetic_data_dir, monkeypatch):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(synthetic_data_dir))
    assert data.load("fashion_mnist", "test", "local").num_examples == 250


def test_missing_data_set_is_one_clear_line(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        data.load("fashion_mnist", "train", "local", str(tmp_path / "nowhere"))
    message = str(error.value)
    assert "\n" not in message
    assert "'fashion_mnist'" in message and str(tmp_path / "nowhere") in message
    assert "--config.data.data_dir" in message


def test_data_order_is_a_function_of_the_seed_alone():
    first = data.ShuffledBatches(data.ArraySource(arrays()), 10, seed=7)
    again = data.ShuffledBatches(data.ArraySource(arrays()), 10, seed=7)
    other = data.ShuffledBatches(data.ArraySource(arrays()), 10, seed=8)
    # Random access in any order gives the same batches.
    for index in (25, 3, 0, 13):
        np.testing.assert_array_equal(first.batch(index)["label"], again.batch(index)["label"])
    labels = lambda source: np.concatenate([source.batch(i)["label"] for i in range(10)])
    assert not np.array_equal(labels(first), labels(other))


def test_each_epoch_sees_every_example_once_in_a_new_order():
    source = data.ShuffledBatches(data.ArraySource(arrays(100)), 10, seed=0)
    epoch = lambda e: np.concatenate([source.batch(e * 10 + i)["label"] for i in range(10)])
    np.testing.assert_array_equal(np.sort(epoch(0)), np.arange(100))
    np.testing.assert_array_equal(np.sort(epoch(1)), np.arange(100))
    assert not np.array_equal(epoch(0), epoch(1))


def test_hosts_split_each_global_batch():
    whole = data.ShuffledBatches(data.ArraySource(arrays()), 12, seed=1)
    parts = [
        data.ShuffledBatches(
            data.ArraySource(arrays()), 12, seed=1, process_index=i, process_count=3
        )
        for i in range(3)
    ]
    for index in (0, 9):
        joined = np.concatenate([p.batch(index)["label"] for p in parts])
        assert all(len(p.batch(index)["label"]) == 4 for p in parts)
        np.testing.assert_array_equal(np.sort(joined), np.sort(whole.batch(index)["label"]))


def test_eval_batches_cover_every_example_once_with_a_padding_mask():
    batches = list(data.eval_batches(data.ArraySource(arrays(25)), 10))
    assert [b["label"].shape for b in batches] == [(10,)] * 3
    real = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(real, np.arange(25))
    assert batches[-1]["mask"].sum() == 5


def test_prefetcher_yields_the_same_batches_from_any_start():
    source = data.ShuffledBatches(data.ArraySource(arrays()), 10, seed=2)
    prefetch = data.Prefetcher(source, start=7, depth=3)
    try:
        for expected_index in range(7, 20):
            index, batch = next(prefetch)
            assert index == expected_index
            np.testing.assert_array_equal(batch["label"], source.batch(index)["label"])
    finally:
        prefetch.close()


def test_batch_size_errors_are_reported():
    with pytest.raises(Exception, match="batch_size"):
        data.ShuffledBatches(data.ArraySource(arrays(10)), 11, seed=0)
    with pytest.raises(Exception, match="hosts"):
        data.ShuffledBatches(data.ArraySource(arrays(10)), 5, seed=0, process_count=2)
