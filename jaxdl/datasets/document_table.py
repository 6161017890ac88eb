"""Labelled documents of your own for the document classifier: a CSV (with a header
row) or JSONL file with a text column and a label column. `data.path` is a folder
holding `<split>.csv` or `<split>.jsonl` for `data.train_split` and `data.eval_split`,
or one file, of which a fixed random `data.eval_fraction` of the rows is the eval split.
Class names are the training split's labels, sorted (numbers by value). Raw text is cut
into sentences and words as the TFDS reviews are (documents.split_sentences, tokenize).

    --config=experiments/polarity_han.py --config.data.name=document_table \
        --config.data.path=reviews.csv --config.data.text_column=review
"""

import csv
import json
from pathlib import Path

import numpy as np

from jaxdl.data import documents, inputs
from jaxdl.errors import DataError, check

TABLE_SUFFIXES = (".csv", ".jsonl")


def read_table(path: Path, text_column: str, label_column: str) -> tuple[list, list]:
    """(texts, labels as strings) of a CSV or JSONL file; a missing column, a row without
    a value, bad JSON or text that is not UTF-8 is a DataError naming the file and row."""
    texts, labels = [], []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if path.suffix == ".csv":
                reader = csv.DictReader(f)
                for column in (text_column, label_column):
                    if column not in (reader.fieldnames or []):
                        raise DataError(
                            f"{path}: no column {column!r} (its columns: {reader.fieldnames})"
                        )
                rows = ((reader.line_num, row) for row in reader)
            else:
                rows = (
                    (number, _json_row(path, number, line))
                    for number, line in enumerate(f, 1)
                    if line.strip()
                )
            for number, row in rows:
                for column in (text_column, label_column):
                    if row.get(column) in (None, ""):
                        raise DataError(f"{path}, row {number}: no value in column {column!r}")
                texts.append(str(row[text_column]))
                labels.append(str(row[label_column]))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from e
    if not texts:
        raise DataError(f"{path} holds no rows")
    return texts, labels


def _json_row(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {number}: not JSON ({e.msg})") from e
    if not isinstance(row, dict):
        raise DataError(f"{path}, line {number}: not a JSON object")
    return row


def _split_file(root: Path, split: str) -> Path:
    found = [root / f"{split}{suffix}" for suffix in TABLE_SUFFIXES]
    found = [p for p in found if p.is_file()]
    if not found:
        raise DataError(f"{root} holds no {split}.csv or {split}.jsonl")
    return found[0]


def _class_names(labels: list[str]) -> list[str]:
    numeric = all(label.lstrip("-").isdigit() for label in labels)
    return sorted(set(labels), key=int if numeric else str)


def read(dcfg) -> tuple:
    check(dcfg.path != "", "data.path is not set: a CSV / JSONL file or a folder of them")
    path = Path(dcfg.path).expanduser()
    columns = (dcfg.text_column, dcfg.label_column)
    if path.is_dir():
        train_texts, train_labels = read_table(_split_file(path, dcfg.train_split), *columns)
        eval_texts, eval_labels = read_table(_split_file(path, dcfg.eval_split), *columns)
    elif path.is_file():
        check(path.suffix in TABLE_SUFFIXES, f"data.path={dcfg.path!r} is not .csv or .jsonl")
        check(
            0 < dcfg.eval_fraction < 1, f"data.eval_fraction={dcfg.eval_fraction} must be in (0, 1)"
        )
        texts, labels = read_table(path, *columns)
        order = np.random.default_rng(0).permutation(len(texts))
        cut = max(1, round(len(texts) * dcfg.eval_fraction))
        eval_rows, train_rows = np.sort(order[:cut]), np.sort(order[cut:])
        train_texts, train_labels = [texts[i] for i in train_rows], [labels[i] for i in train_rows]
        eval_texts, eval_labels = [texts[i] for i in eval_rows], [labels[i] for i in eval_rows]
    else:
        raise DataError(f"data.path={dcfg.path!r} is neither a file nor a folder")
    names = _class_names(train_labels)
    unknown = sorted(set(eval_labels) - set(names))
    if unknown:
        raise DataError(f"{path}: eval labels {unknown} never occur in training ({names})")
    ids = {name: i for i, name in enumerate(names)}
    as_ids = lambda labels: [ids[label] for label in labels]
    train = documents.documents_from_text(train_texts, as_ids(train_labels), "train")
    evals = documents.documents_from_text(eval_texts, as_ids(eval_labels), "eval")
    return train, evals, names, {"origin": f"document table {path}", "fold": None}


inputs.document_source(
    "document_table",
    read,
    path="",  # a .csv / .jsonl file, or a folder of <split>.csv / <split>.jsonl
    text_column="text",
    label_column="label",
    train_split="train",
    eval_split="test",
    eval_fraction=0.1,  # of one file's rows, when data.path is a file
)
