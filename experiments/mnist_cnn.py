"""MNIST digits with the default experiment's CNN (experiments/fashion_cnn.py).

The TFDS catalogue's `mnist`: TFDS downloads and prepares it once (`pip install -e
'.[tfds]'`, online), or a local copy of the IDX files in DATA_DIR/mnist is read as
Fashion-MNIST's is. Not measured on this machine (no copy offline): the recipe is
fashion_cnn's, without flips (a mirrored digit is another digit or none) and with small
shifts instead.
"""

from experiments import fashion_cnn


def get_config():
    config = fashion_cnn.get_config()
    config.data.name = "mnist"
    config.task.update(flip=False, shift=2)
    return config
