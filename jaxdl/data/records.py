"""ArrayRecord files of fixed-shape examples: what `launch/prepare_data.py` writes from
any source, read with random access (grain's ArrayRecordDataSource), so a set too large
to decode every epoch is read example by example, never whole.

A prepared folder holds `<split>.array_record` for each split and `info.json`: the
input's info (class names, image shape, ...) and `fields`, each field's dtype and shape.
A record is the fields' bytes, in `fields` order.
"""

import json
from pathlib import Path

import numpy as np

from jaxdl.data.pipeline import ExampleSource, stack_examples
from jaxdl.errors import DataError

INFO_FILE = "info.json"
SUFFIX = ".array_record"


def fields_of(example: dict) -> dict:
    """{field: {"dtype", "shape"}} of one example."""
    return {
        name: {"dtype": np.asarray(v).dtype.str, "shape": list(np.shape(v))}
        for name, v in example.items()
    }


def encode(example: dict, fields: dict) -> bytes:
    return b"".join(
        np.ascontiguousarray(example[name], np.dtype(spec["dtype"])).tobytes()
        for name, spec in fields.items()
    )


def decode(record: bytes, fields: dict) -> dict:
    out, offset = {}, 0
    for name, spec in fields.items():
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        out[name] = np.frombuffer(record, dtype, count=size // dtype.itemsize, offset=offset)
        out[name] = out[name].reshape(shape)
        offset += size
    if offset != len(record):
        raise DataError(f"a record of {len(record)} bytes does not hold fields {fields}")
    return out


def write_split(path: Path, examples, fields: dict) -> int:
    """Writes `examples` (an iterable of dicts) to one ArrayRecord file; returns the
    count. Written to a temporary name and renamed: a killed write leaves no split."""
    from array_record.python.array_record_module import ArrayRecordWriter

    partial = path.with_name(path.name + ".partial")
    writer = ArrayRecordWriter(str(partial), "group_size:1")  # random access per record
    count = 0
    try:
        for example in examples:
            writer.write(encode(example, fields))
            count += 1
    finally:
        writer.close()
    partial.rename(path)
    return count


def read_info(root: Path) -> dict:
    try:
        return json.loads((root / INFO_FILE).read_text())
    except FileNotFoundError as e:
        raise DataError(
            f"{root} holds no {INFO_FILE}: not a folder written by launch/prepare_data.py"
        ) from e
    except json.JSONDecodeError as e:
        raise DataError(f"{root / INFO_FILE} is damaged ({e}); prepare the set again") from e


class RecordSource(ExampleSource):
    """One split of a prepared folder, example by example (picklable: the reader opens
    in the process that reads)."""

    def __init__(self, path: Path, fields: dict):
        if not path.is_file():
            raise DataError(f"{path} not found: prepare that split (launch/prepare_data.py)")
        self.path = path
        self.fields = fields
        self._reader = None
        self.num_examples = len(self._records())

    def _records(self):
        if self._reader is None:
            import grain

            try:
                self._reader = grain.sources.ArrayRecordDataSource([str(self.path)])
            except Exception as e:  # array_record raises plain RuntimeErrors
                raise DataError(f"{self.path}: not a readable ArrayRecord file ({e})") from e
        return self._reader

    def __getstate__(self):
        return {**self.__dict__, "_reader": None}

    def example(self, index: int, draw: int | None) -> dict:
        return decode(self._records()[index], self.fields)

    def read(self, rows: np.ndarray, draws: np.ndarray | None = None) -> dict:
        records = self._records().__getitems__([int(r) for r in rows])
        return stack_examples([decode(r, self.fields) for r in records])
