"""Fashion-MNIST class-conditional GAN: sub-pixel generator with a label embedding,
projection discriminator with an R1 penalty on real images and an auxiliary class head,
EMA of the generator for sampling.

R1 (gamma 1) makes each step slower but learns much faster per step: at 5,000 steps the
Fréchet distance was 23x the floor with it, 39x without. The auxiliary classifier (weight
0.2) then raised class-correct at 5,000 steps from 0.90x to 0.99x the judge's real
accuracy, with the Fréchet distance 22x (bench/results/gan.md).

Sample grids (one row per class) go to workdir/images/ at each eval; launch/gan_eval.py
judges a run with the Fashion-MNIST classifier (class-correct rate, Fréchet distance);
bench/gan.py runs this experiment for 30 minutes and reports both.
"""

from jaxdl import optim
from jaxdl.configs import base_config


def get_config():
    config = base_config()
    config.data.update(batch_size=32, eval_batch_size=1000)
    d_optimizer = optim.default_config()
    d_optimizer.update(
        name="adam",
        learning_rate=2e-4,
        b1=0.5,
        b2=0.99,
        clip="none",
        schedule="constant",
        warmup_fraction=0.0,
    )
    config.task = dict(
        name="gan",
        loss="non_saturating",  # non_saturating | hinge
        noise_dim=100,
        noise_distribution="uniform",  # uniform in [-1, 1] | normal
        n_disc=1,  # discriminator steps per generator step (the batch is split among them)
        r1_gamma=1.0,  # weight of the R1 penalty on real images (0 = none)
        mode_seeking=0.0,  # weight of the generator's mode-seeking term (0 = none)
        aux_classifier=0.2,  # weight of the discriminator's class head's loss (0 = none)
        ema=0.999,  # decay of the generator's weight average used for samples (0 = none)
        pretrain_steps=0,  # > 0: first train the generator as an autoencoder's decoder
        refine_steps=0,  # > 0: discriminator-guided steps on the noise when sampling
        refine_step_size=0.05,
        d_optimizer=d_optimizer,  # the discriminator's; config.optimizer is the generator's
    )
    config.model = dict(
        name="dcgan",
        conditional=True,
        g_width=16,
        d_width=16,
        d_minibatch_std=0,  # > 0: D sees the feature spread over groups of this many images
        conv_impl="xla",
    )
    config.optimizer.update(
        name="adam",
        learning_rate=2e-4,
        b1=0.5,
        b2=0.99,
        clip="none",
        schedule="constant",
        warmup_fraction=0.0,
    )
    config.train.update(
        num_epochs=1000,
        max_seconds=1800.0,
        log_every=200,
        eval_every=1000,
        checkpoint_every=500,
        keep_checkpoints=100,  # bench/gan.py judges them all: metrics over steps
    )
    return config
