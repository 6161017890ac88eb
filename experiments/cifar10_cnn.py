"""CIFAR-10 (32x32 colour images, 10 classes) with a VGG-like CNN: a recipe sized for
32x32x3, untuned here.

The TFDS catalogue's `cifar10`: TFDS downloads and prepares it once (`pip install -e
'.[tfds]'`, online). Not measured on this machine (no copy offline). The choices are the
usual ones for this size: three stages of two 3x3 convolutions with batch norm (64, 128,
256 channels, 2x2 pooling after each), flips and 4-pixel shifts, AdamW on a one-cycle
schedule, 30 epochs.
"""

from jaxdl.configs import base_config


def get_config():
    config = base_config()
    config.data.update(name="cifar10", batch_size=128, eval_batch_size=1000)
    config.task.update(label_smoothing=0.1, flip=True, shift=4)
    config.model.update(stages=((64, 64), (128, 128), (256, 256)), dense=256, dropout=0.25)
    config.optimizer.update(
        name="adamw",
        learning_rate=3e-3,
        weight_decay=0.05,
        schedule="one_cycle",
        warmup_fraction=0.2,
        clip="global_norm",
        clip_norm=5.0,
    )
    config.train.update(num_epochs=30, log_every=200, eval_every=3910, checkpoint_every=3910)
    return config
