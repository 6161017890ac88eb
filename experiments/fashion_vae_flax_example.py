"""The baseline of bench/vae.py: the Flax example VAE's architecture and optimizer
(MLP 784-500-20, Bernoulli likelihood, Adam 1e-3, batch 128) run through jaxdl's trainer
with fashion_vae.py's budget and evaluation."""

from experiments import fashion_vae


def get_config():
    config = fashion_vae.get_config()
    config.task.update(kl_warmup_steps=0)
    config.model.update(arch="mlp", latent=20, hidden=(500,))
    config.optimizer.update(
        name="adam", learning_rate=1e-3, clip="none", schedule="constant", warmup_fraction=0.0
    )
    return config
