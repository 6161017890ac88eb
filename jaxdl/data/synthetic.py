"""Small generated data sets of each kind a source reads, written where asked: what the
tests and bench/input_pipeline.py train on, and a quick way to try a source. Each class
of the image folders has its own brightness, so a classifier can learn them.
"""

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ("good", "bad", "film", "plot", "actor", "scene", "great", "dull", "music", "end")


def write_image_folder(
    root: Path,
    per_split: dict,
    classes=("cat", "dog", "eel"),
    sizes=(20, 90),
    modes=("RGB", "L", "RGBA", "P"),
    suffixes=(".png", ".jpg"),
    seed: int = 0,
) -> Path:
    """root/<split>/<class>/<i><suffix>: `per_split[split]` images of each class, of
    random sizes in `sizes` (or all `sizes[0]` when both ends are equal), cycling through
    `modes` and `suffixes` (JPEG stores RGB and L only: others are written as RGB)."""
    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        for label, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                width, height = rng.integers(sizes[0], sizes[1] + 1, 2)
                base = 40 + 160 * label / max(len(classes) - 1, 1)
                pixels = np.clip(base + rng.normal(0, 30, (height, width, 3)), 0, 255)
                image = Image.fromarray(pixels.astype(np.uint8)).convert(modes[i % len(modes)])
                suffix = suffixes[i % len(suffixes)]
                if suffix != ".png" and image.mode not in ("RGB", "L"):
                    image = image.convert("RGB")
                image.save(folder / f"{i:06d}{suffix}")
    return Path(root)


def document_rows(count: int, seed: int = 0) -> list[dict]:
    """Reviews of a few sentences; label "pos" when "good"/"great" outnumber "bad"/"dull"."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        positive = bool(rng.integers(2))
        mood = ("good", "great") if positive else ("bad", "dull")
        sentences = []
        for _ in range(int(rng.integers(2, 5))):
            words = [str(rng.choice(WORDS)) for _ in range(int(rng.integers(3, 8)))]
            words[int(rng.integers(len(words)))] = str(rng.choice(mood))
            sentences.append(" ".join(words).capitalize() + ".")
        rows.append({"text": " ".join(sentences), "label": "pos" if positive else "neg"})
    return rows


def write_document_table(path: Path, rows: list[dict]) -> Path:
    """`rows` as a CSV (with a header) or JSONL file, by the path's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        if path.suffix == ".csv":
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        else:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def text(num_chars: int, seed: int = 0) -> str:
    """Sentences of WORDS, `num_chars` characters."""
    rng = np.random.default_rng(seed)
    parts, length = [], 0
    while length < num_chars:
        sentence = " ".join(rng.choice(WORDS, int(rng.integers(3, 9)))).capitalize() + ".\n"
        parts.append(sentence)
        length += len(sentence)
    return "".join(parts)[:num_chars]
