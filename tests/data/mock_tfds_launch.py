"""Runs a launcher with TFDS's mock data: every TFDS set is made of generated examples of
its real features (tfds.testing.mock_data), so the TFDS path runs with no download.

    python tests/data/mock_tfds_launch.py NUM_EXAMPLES launch/train.py --config=...
"""

import runpy
import sys
from pathlib import Path

import tensorflow_datasets as tfds

if __name__ == "__main__":
    num_examples, script = int(sys.argv[1]), sys.argv[2]
    sys.argv = [script, *sys.argv[3:]]
    sys.path.insert(0, str(Path(script).resolve().parent))  # the launcher's own imports
    with tfds.testing.mock_data(num_examples=num_examples):
        runpy.run_path(script, run_name="__main__")
