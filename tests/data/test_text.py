import numpy as np
import pytest

from jaxdl import data
from jaxdl.errors import UserError


def test_vocab_round_trip_and_sorted_ids():
    vocab = data.CharVocab.of("hello world\n")
    assert vocab.chars == "\n dehlorw" and vocab.size == 9
    ids = vocab.encode("hold")
    assert ids.dtype == np.int32 and vocab.decode(ids) == "hold"
    assert data.CharVocab(vocab.chars) == vocab  # the chars saved in run.json rebuild it
    with pytest.raises(UserError, match="not in the vocabulary: 'xz'"):
        vocab.encode("xzx")


def test_streams_continue_from_batch_to_batch():
    tokens = np.arange(10_000, dtype=np.int32)  # token value = its position in the text
    batches = data.StreamBatches(tokens, batch_size=4, window=16, seed=0)
    stream_length = 9_999 // 4
    assert batches.batches_per_epoch == stream_length // 16 - 1
    first, second = batches.batch(0), batches.batch(1)
    assert first["inputs"].shape == first["targets"].shape == (4, 16)
    np.testing.assert_array_equal(first["targets"], first["inputs"] + 1)
    # Stream b at step t + 1 starts where stream b at step t stopped.
    np.testing.assert_array_equal(second["inputs"][:, 0], first["inputs"][:, -1] + 1)
    # Streams are contiguous thirds of the text, starting at the epoch's offset.
    offset = batches.offset(0)
    assert 0 <= offset < 16
    np.testing.assert_array_equal(first["inputs"][:, 0], np.arange(4) * stream_length + offset)
    assert first["reset"].all() and not second["reset"].any()


def test_each_epoch_restarts_the_streams_at_a_seeded_offset():
    tokens = np.arange(10_000, dtype=np.int32)
    batches = data.StreamBatches(tokens, batch_size=4, window=16, seed=3)
    per_epoch = batches.batches_per_epoch
    starts = [batches.batch(e * per_epoch)["inputs"][0, 0] for e in range(6)]
    assert len(set(starts)) > 1  # boundaries move between epochs
    assert all(batches.batch(e * per_epoch)["reset"].all() for e in range(3))
    again = data.StreamBatches(tokens, batch_size=4, window=16, seed=3)
    np.testing.assert_array_equal(
        again.batch(per_epoch + 5)["inputs"], batches.batch(per_epoch + 5)["inputs"]
    )
    # The last window of an epoch stays inside each stream.
    last = batches.batch(per_epoch - 1)["targets"]
    assert (last[:, -1] < np.arange(1, 5) * (9_999 // 4) + 1).all()


def test_hosts_read_disjoint_streams_of_the_global_batch():
    tokens = np.arange(10_000, dtype=np.int32)
    whole = data.StreamBatches(tokens, 4, 16, seed=1).batch(7)
    parts = [
        data.StreamBatches(tokens, 4, 16, seed=1, process_index=p, process_count=2).batch(7)
        for p in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate([p["inputs"] for p in parts]), whole["inputs"])


def test_too_little_text_is_a_clear_error():
    with pytest.raises(UserError, match="too few"):
        data.StreamBatches(np.arange(100, dtype=np.int32), batch_size=4, window=16, seed=0)


@pytest.mark.parametrize("num_tokens", [2, 97, 1000, 1001])
def test_eval_streams_predict_every_token_once(num_tokens):
    tokens = np.arange(num_tokens, dtype=np.int32)
    arrays = data.eval_streams(tokens, num_streams=4, window=8)
    assert arrays["inputs"].shape[0] == 4 and arrays["inputs"].shape[2] == 8
    real = arrays["weights"] == 1
    np.testing.assert_array_equal(np.sort(arrays["targets"][real]), np.arange(1, num_tokens))
    np.testing.assert_array_equal(arrays["inputs"][real], arrays["targets"][real] - 1)
    # Within a stream, windows follow each other: the text continues across windows.
    flat = arrays["inputs"][0].reshape(-1)[real[0].reshape(-1)]
    np.testing.assert_array_equal(np.diff(flat), 1)


def test_validation_is_the_last_tenth():
    train, val = data.text.split_tail(np.arange(1000), 0.1)
    assert len(train) == 900 and val[0] == 900 and val[-1] == 999


def test_local_text_data_set(tmp_path):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_text("To be, or not to be.\n" * 10)
    text, origin = data.load_text("tiny_shakespeare", "local", str(tmp_path))
    assert text.startswith("To be") and len(text) == 210 and str(folder) in origin
    with pytest.raises(UserError, match="not found"):
        data.load_text("tiny_shakespeare", "local", str(tmp_path / "nowhere"))
