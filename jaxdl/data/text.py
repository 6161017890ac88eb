"""Character-level text: a vocabulary, contiguous training streams, whole-text eval.

Truncated BPTT needs batches whose row b continues row b of the previous batch: the
training text is cut into B contiguous streams and batch k holds window k of each. The
layout is a pure function of (text, seed, k), so a resumed run reads the same windows.
"""

import dataclasses

import numpy as np

from jaxdl.errors import check


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """Characters <-> ids; ids follow sorted character order (as char-rnn and nanoGPT)."""

    chars: str

    @classmethod
    def of(cls, text: str) -> "CharVocab":
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        table = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - table.keys())
        check(not unknown, f"characters not in the vocabulary: {''.join(unknown)!r}")
        return np.fromiter((table[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in np.asarray(ids).reshape(-1))


def split_tail(tokens: np.ndarray, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval): eval is the last `eval_fraction` of the text (nanoGPT's split)."""
    check(0 < eval_fraction < 1, f"data.eval_fraction={eval_fraction} must be in (0, 1)")
    cut = int(len(tokens) * (1 - eval_fraction))
    return tokens[:cut], tokens[cut:]


class StreamBatches:
    """Random-access batches of `window` tokens from `batch_size` contiguous streams.

    Batch k of epoch e = k // batches_per_epoch holds, for every stream b, the window
    that follows the one in batch k - 1 (`inputs` and next-token `targets`, (B, K)), and
    `reset` (B,) is True on the first window of an epoch, where carries start from zero.
    Each epoch starts the streams at a random offset in [0, window), drawn from
    (seed, epoch), so window boundaries move between epochs. Host p of P reads streams
    [p * B / P, (p + 1) * B / P).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        window: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        check(batch_size > 0, f"data.batch_size={batch_size} must be positive")
        check(window > 0, f"data.window={window} must be positive")
        check(
            batch_size % process_count == 0,
            f"data.batch_size={batch_size} must divide evenly over {process_count} hosts",
        )
        stream_length = (len(tokens) - 1) // batch_size
        self.batches_per_epoch = stream_length // window - 1  # room for any offset < window
        check(
            self.batches_per_epoch >= 1,
            f"{len(tokens)} training tokens are too few for {batch_size} streams of "
            f"windows of {window}",
        )
        self.tokens = tokens
        self.window = window
        self.seed = seed
        self.global_batch_size = batch_size
        host_size = batch_size // process_count
        streams = np.arange(process_index * host_size, (process_index + 1) * host_size)
        self._stream_starts = streams * stream_length

    def offset(self, epoch: int) -> int:
        return int(np.random.default_rng([self.seed, epoch]).integers(self.window))

    def batch(self, index: int) -> dict:
        epoch, within = divmod(index, self.batches_per_epoch)
        starts = self._stream_starts + self.offset(epoch) + within * self.window
        rows = starts[:, None] + np.arange(self.window + 1)
        chunk = np.asarray(self.tokens[rows], np.int32)  # (a memory-mapped text: uint16)
        return {
            "inputs": chunk[:, :-1],
            "targets": chunk[:, 1:],
            "reset": np.full(len(starts), within == 0),
        }


def eval_streams(tokens: np.ndarray, num_streams: int, window: int) -> dict:
    """The whole eval text as `num_streams` contiguous streams of windows, for an eval
    that carries state across windows: arrays (streams, windows, window) of `inputs`,
    `targets` and `weights` (1 for a real next-token prediction, 0 for padding). Every
    token after the first is predicted exactly once."""
    check(len(tokens) >= 2, "the eval text needs at least 2 tokens")
    num_predictions = len(tokens) - 1
    stream_length = -(-num_predictions // num_streams)
    num_windows = -(-stream_length // window)
    positions = np.arange(num_streams)[:, None] * stream_length + np.arange(num_windows * window)
    real = (positions < num_predictions) & (
        np.arange(num_windows * window)[None, :] < stream_length
    )
    positions = np.where(real, positions, 0)
    shape = (num_streams, num_windows, window)
    return {
        "inputs": np.asarray(tokens[positions], np.int32).reshape(shape),
        "targets": np.asarray(tokens[positions + 1], np.int32).reshape(shape),
        "weights": real.astype(np.float32).reshape(shape),
    }
