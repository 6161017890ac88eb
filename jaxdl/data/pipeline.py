"""Host-side batching: deterministic, random-access, resumable.

Batch k of a run is a pure function of (source, seed, k): epoch e = k // batches_per_epoch
is ordered by a permutation drawn from (seed, e). So the data position saved with a
checkpoint is one integer, and a resumed run reads exactly the batches it would have read.

A source is anything with `num_examples` and `read(rows, draws=None) -> {field: array}`
(the examples `rows`, stacked): arrays in memory (`ArraySource`), or examples decoded on
demand (`ExampleSource`: image files, ArrayRecord, TFDS data sources), so a set need never
be held whole. `draws` are per-row random seeds for a source's random transforms (a
random crop); a training batch draws them from (seed, k, row of the global batch), so a
resume and any process or worker count give the same pixels.
"""

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np

from jaxdl.errors import check


class Source(Protocol):
    num_examples: int

    def read(self, rows: np.ndarray, draws: np.ndarray | None = None) -> dict: ...


class ArraySource:
    """Examples held in memory: a dict of arrays with one leading length."""

    def __init__(self, arrays: dict):
        self.arrays = arrays
        self.num_examples = len(next(iter(arrays.values())))

    def read(self, rows: np.ndarray, draws: np.ndarray | None = None) -> dict:
        return {name: array[rows] for name, array in self.arrays.items()}


class ExampleSource:
    """Examples made one at a time by `example(index, draw)` (draw: an int seed, or None
    for the deterministic form, e.g. eval's centre crop). Subclasses are picklable: worker
    processes (data.workers) receive them."""

    num_examples: int

    def example(self, index: int, draw: int | None) -> dict:
        raise NotImplementedError

    def read(self, rows: np.ndarray, draws: np.ndarray | None = None) -> dict:
        return stack_examples(
            [
                self.example(int(row), None if draws is None else int(draws[i]))
                for i, row in enumerate(rows)
            ]
        )


def stack_examples(examples: list[dict]) -> dict:
    """Examples (dicts of arrays) as one batch."""
    return {name: np.stack([e[name] for e in examples]) for name in examples[0]}


def _read_rows(job: tuple) -> dict:
    source, rows = job
    return source.read(rows)


def read_chunks(source: Source, workers: int = 0, chunk: int = 256) -> Iterator[dict]:
    """Every example of `source`, in order, as batches of `chunk` (read in `workers`
    processes when > 0)."""
    jobs = (
        (source, np.arange(start, min(start + chunk, source.num_examples)))
        for start in range(0, source.num_examples, chunk)
    )
    if not workers:
        yield from map(_read_rows, jobs)
        return
    import multiprocessing

    from jaxdl.train.processes import die_with_parent

    with multiprocessing.get_context("spawn").Pool(workers, die_with_parent) as pool:
        yield from pool.imap(_read_rows, jobs)


def read_all(source: Source, workers: int = 0) -> dict:
    """Every example of a (small) source as arrays."""
    if isinstance(source, ArraySource):
        return source.arrays
    parts = list(read_chunks(source, workers))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def held_if_small(source: Source, max_bytes: int, workers: int = 0) -> Source:
    """`source` read whole into memory when its examples (as read) take at most
    `max_bytes` and it draws nothing at random (a random crop must be made anew each
    epoch): decoding a small set once beats decoding it every epoch."""
    if isinstance(source, ArraySource) or getattr(source, "random", False):
        return source
    first = source.read(np.arange(1))
    size = source.num_examples * sum(np.asarray(v).nbytes for v in first.values())
    return ArraySource(read_all(source, workers)) if size <= max_bytes else source


class LazySample(Mapping):
    """Arrays made by `read()` on first access: a data-dependent start that reads
    nothing (most tasks) costs no pass over the data."""

    def __init__(self, read):
        self._read = read
        self._arrays = None

    def _loaded(self) -> dict:
        if self._arrays is None:
            self._arrays = self._read()
        return self._arrays

    def __getitem__(self, name: str):
        return self._loaded()[name]

    def __iter__(self):
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def bounded_sample(source: Source, max_examples: int) -> dict:
    """At most `max_examples` examples of `source`, the same ones every run (a fixed
    random subset, in order; all of a smaller set): what a data-dependent start reads."""
    rows = np.arange(source.num_examples)
    if len(rows) > max_examples:
        rows = np.sort(np.random.default_rng(0).choice(rows, max_examples, replace=False))
    return source.read(rows)


class ShuffledBatches:
    """Random-access training batches: reshuffled every epoch, remainder dropped.

    Every host computes the same global permutation and keeps its own contiguous
    slice of each global batch (per-host slicing for multi-host training). With
    `random_draws`, each row also gets a seed for the source's random transforms.
    """

    def __init__(
        self,
        source: Source,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        random_draws: bool = False,
    ):
        num_examples = source.num_examples
        check(global_batch_size > 0, f"data.batch_size={global_batch_size} must be positive")
        check(
            global_batch_size % process_count == 0,
            f"data.batch_size={global_batch_size} must divide evenly over {process_count} hosts",
        )
        check(
            global_batch_size <= num_examples,
            f"data.batch_size={global_batch_size} exceeds the {num_examples} training examples",
        )
        self.source = source
        self.seed = seed
        self.random_draws = random_draws
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
        host = slice(self._host_offset, self._host_offset + self.host_batch_size)
        draws = None
        if self.random_draws:  # (seed, k) -> one seed per row of the global batch
            rng = np.random.default_rng([self.seed, index, 1])
            draws = rng.integers(2**63, size=self.global_batch_size)[host]
        return self.source.read(rows[host], draws)


def eval_batches(
    source: Source, batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[dict]:
    """Every example exactly once, in order; the last batch is padded and `mask` marks
    real rows, so batch shapes never change (one compilation) and no example is lost.
    `index` is each row's place in the set."""
    check(batch_size % process_count == 0, "data.eval_batch_size must divide over hosts")
    num_examples = source.num_examples
    host_size = batch_size // process_count
    for start in range(0, num_examples, batch_size):
        rows = np.arange(start + process_index * host_size, start + (process_index + 1) * host_size)
        mask = rows < num_examples
        batch = source.read(np.where(mask, rows, 0))
        batch["mask"] = mask
        batch["index"] = rows.astype(np.int32)  # for draws of a row's own (tasks.base.row_keys)
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


def decodes(batches) -> bool:
    """Whether making `batches` decodes examples (a source read on demand), the work
    data.workers share; batches of arrays in memory are only slices, which worker
    processes would slow down (pickled to them, copied back)."""
    if isinstance(batches, StackedBatches):
        return any(decodes(s) for s in batches.sources)
    source = getattr(batches, "source", None)  # (token streams are held in memory)
    return source is not None and not isinstance(source, ArraySource)


class _MakeBatch:
    """batches.batch as a picklable callable: what each worker process runs. Unpickled
    in a worker, it makes the worker die with its trainer (a trainer killed by SIGKILL
    leaves no worker behind)."""

    def __init__(self, batches):
        self.batches = batches

    def __setstate__(self, state: dict) -> None:
        from jaxdl.train.processes import die_with_parent

        die_with_parent()
        self.__dict__.update(state)

    def __call__(self, index: int) -> dict:
        return self.batches.batch(index)


def _worker_batches(batches, start: int, workers: int, depth: int):
    """An iterator of batches start, start+1, ... made by `workers` processes (grain's
    multiprocess prefetch over the random-access batches: order and contents are those
    of batches.batch, whatever the worker count)."""
    import grain  # ~0.3 s to import; only worker runs need it
    from absl import flags

    if not flags.FLAGS.is_parsed():  # grain reads its absl flags; a notebook parsed none
        flags.FLAGS.mark_as_parsed()
    dataset = grain.MapDataset.range(start, 2**62).map(_MakeBatch(batches))
    dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    # Batches come back pickled, not in shared memory: the blocks of batches still in
    # flight when the trainer stops were reported leaked at exit (two lines of warning).
    dataset = grain.experimental.WithOptionsIterDataset(
        dataset, grain.experimental.DatasetOptions(min_shm_size=2**62)
    )
    options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=depth)
    return iter(dataset.mp_prefetch(options))


class Prefetcher:
    """Computes batches start, start+1, ... on a background thread, `depth` ahead; with
    `workers` > 0 the host batches are made in that many worker processes where making
    them decodes (`decodes`; `self.workers` says how many were started).

    Yields (index, batch). `transform` (e.g. a device put) runs on the thread too.
    """

    def __init__(self, source, start: int, depth: int = 2, transform=None, workers: int = 0):
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._transform = transform or (lambda batch: batch)
        self.workers = workers if decodes(source) else 0
        self._made = (
            _worker_batches(source, start, self.workers, max(depth, 1)) if self.workers else None
        )
        self._thread = threading.Thread(
            target=self._fill, args=(source, start), daemon=True, name="prefetch"
        )
        self._thread.start()

    def _host_batch(self, source, index: int) -> dict:
        return source.batch(index) if self._made is None else next(self._made)

    def _fill(self, source, index: int) -> None:
        try:
            while not self._stop.is_set():
                item = (index, self._transform(self._host_batch(source, index)))
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
        if self._made is not None:
            self._made.close()
