"""Host-side batching: deterministic, random-access, resumable.

Batch k of a run is a pure function of (arrays, seed, k): epoch e = k // batches_per_epoch
is ordered by a permutation drawn from (seed, e). So the data position saved with a
checkpoint is one integer, and a resumed run reads exactly the batches it would have read.
"""

import queue
import threading
from collections.abc import Iterator

import numpy as np

from jaxdl.errors import check


class ShuffledBatches:
    """Random-access training batches: reshuffled every epoch, remainder dropped.

    Every host computes the same global permutation and keeps its own contiguous
    slice of each global batch (per-host slicing for multi-host training).
    """

    def __init__(
        self,
        arrays: dict,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        num_examples = len(next(iter(arrays.values())))
        check(global_batch_size > 0, f"data.batch_size={global_batch_size} must be positive")
        check(
            global_batch_size % process_count == 0,
            f"data.batch_size={global_batch_size} must divide evenly over {process_count} hosts",
        )
        check(
            global_batch_size <= num_examples,
            f"data.batch_size={global_batch_size} exceeds the {num_examples} training examples",
        )
        self.arrays = arrays
        self.seed = seed
        self.batches_per_epoch = num_examples // global_batch_size
        self.global_batch_size = global_batch_size
        self.host_batch_size = global_batch_size // process_count
        self._host_offset = process_index * self.host_batch_size
        self._num_examples = num_examples
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch_order = (epoch, rng.permutation(self._num_examples))
        return self._epoch_order[1]

    def batch(self, index: int) -> dict:
        """This host's part of global batch `index` (0-based over the whole run)."""
        epoch, within = divmod(index, self.batches_per_epoch)
        start = within * self.global_batch_size
        # Sorted over the global batch, then sliced: row i of the global batch is the same
        # example whatever the number of hosts (per-row randomness, e.g. flips, follows).
        rows = np.sort(self._order(epoch)[start : start + self.global_batch_size])
        rows = rows[self._host_offset : self._host_offset + self.host_batch_size]
        return {name: array[rows] for name, array in self.arrays.items()}


def eval_batches(
    arrays: dict, batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[dict]:
    """Every example exactly once, in order; the last batch is padded and `mask` marks
    real rows, so batch shapes never change (one compilation) and no example is lost."""
    check(batch_size % process_count == 0, "data.eval_batch_size must divide over hosts")
    num_examples = len(next(iter(arrays.values())))
    host_size = batch_size // process_count
    for start in range(0, num_examples, batch_size):
        rows = np.arange(start + process_index * host_size, start + (process_index + 1) * host_size)
        mask = rows < num_examples
        rows = np.where(mask, rows, 0)
        batch = {name: array[rows] for name, array in arrays.items()}
        batch["mask"] = mask
        yield batch


class StackedBatches:
    """The batches of K sources (one per vmapped trial) stacked on a new leading axis."""

    def __init__(self, sources: list):
        self.sources = sources
        self.batches_per_epoch = sources[0].batches_per_epoch

    def batch(self, index: int) -> dict:
        # Trials that share a seed share a source: make its batch once.
        made = {id(s): s.batch(index) for s in {id(s): s for s in self.sources}.values()}
        batches = [made[id(source)] for source in self.sources]
        return {name: np.stack([b[name] for b in batches]) for name in batches[0]}


class Prefetcher:
    """Computes batches start, start+1, ... on a background thread, `depth` ahead.

    Yields (index, batch). `transform` (e.g. a device put) runs on the thread too.
    """

    def __init__(self, source: ShuffledBatches, start: int, depth: int = 2, transform=None):
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._transform = transform or (lambda batch: batch)
        self._thread = threading.Thread(
            target=self._fill, args=(source, start), daemon=True, name="prefetch"
        )
        self._thread.start()

    def _fill(self, source: ShuffledBatches, index: int) -> None:
        try:
            while not self._stop.is_set():
                item = (index, self._transform(source.batch(index)))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                index += 1
        except Exception as e:  # surfaced to the consumer, never swallowed
            self._queue.put(e)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, dict]:
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
