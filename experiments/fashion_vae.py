"""Fashion-MNIST VAE: diagonal Gaussian posterior, Bernoulli likelihood on grey values.

eval/loss is the test negative ELBO in nats per image (one posterior sample per image);
eval/iwae_nll the importance-weighted bound with task.iwae_samples samples. Pictures of
reconstructions, prior samples and same-class interpolations go to workdir/images/ at
each eval. Tuned to the 5-minute budget of bench/vae.py on a 2-core CPU.
"""

from jaxdl.configs import base_config


def get_config():
    config = base_config()
    config.data.update(batch_size=128, eval_batch_size=1000)
    config.task = dict(
        name="autoencode",
        likelihood="bernoulli",  # bernoulli | gaussian
        gaussian_sigma=0.1,  # gaussian only: the fixed pixel noise
        beta=1.0,  # weight of the KL term (1 = the ELBO)
        kl_warmup_steps=2000,  # beta ramps up from 0 over these steps
        iwae_samples=16,  # k of the IWAE bound at each eval (0 = skip); bench/vae.py: 1000
    )
    config.model = dict(
        name="autoencoder",
        arch="mlp",  # mlp | conv
        latent=32,
        hidden=(512, 256),
        channels=(32, 64),  # conv only
        variational=True,
        logvar_min=-10.0,
        logvar_max=10.0,
    )
    config.optimizer.update(
        name="adam",
        learning_rate=2e-3,
        clip="global_norm",
        clip_norm=100.0,  # losses are sums over 784 pixels: gradients are large
        schedule="warmup_cosine",
        warmup_fraction=0.02,
        final_lr_fraction=0.02,
    )
    config.train.update(
        num_epochs=60,
        max_seconds=300.0,
        log_every=100,
        eval_every=5000,
        checkpoint_every=5000,
    )
    return config
