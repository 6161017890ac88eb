"""Fashion-MNIST unconditional GAN: fashion_cgan without labels (the discriminator's
projection term, its class head and the generator's label embedding are gone).
launch/gan_eval.py reports the entropy of the classes a classifier sees in its samples
(collapse shows as low)."""

from experiments import fashion_cgan


def get_config():
    config = fashion_cgan.get_config()
    config.model.conditional = False
    config.task.aux_classifier = 0.0  # needs labels
    return config
