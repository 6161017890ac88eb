"""Fashion-MNIST plain autoencoder: fashion_vae.py's networks with a deterministic code.

eval/loss is the test reconstruction loss (Bernoulli nats per image). Its latent space
is compared with the VAE's by bench/interpolation.py.
"""

from experiments import fashion_vae


def get_config():
    config = fashion_vae.get_config()
    config.model.variational = False
    config.task.update(kl_warmup_steps=0, iwae_samples=0)
    return config
