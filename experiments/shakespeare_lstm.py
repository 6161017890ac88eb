"""Character-level LSTM language model on Tiny Shakespeare, trained by truncated BPTT.

eval/loss is validation nats/char over the last 10% of the text (nanoGPT's
shakespeare_char split); eval/bits_per_char beside it. Tuned for this 2-core CPU: see
bench/shakespeare_lstm.py and bench/results/shakespeare_lstm.md.
"""

from jaxdl.configs import base_config


def get_config():
    config = base_config()
    config.data.update(
        name="tiny_shakespeare",
        batch_size=64,  # contiguous streams
        eval_batch_size=64,  # eval streams over the validation text
    )
    config.data.window = 128  # truncation length K: tokens per stream per step
    config.data.eval_fraction = 0.1
    config.task = dict(name="lm")
    config.model = dict(
        name="rnn_lm",
        cell="lstm",  # lstm | rnn (tanh)
        hidden=256,
        layers=2,
        backward="explicit",  # explicit (hand-written BPTT) | autodiff; lstm only
        activation="tanh",  # tanh | relu; rnn only
        dropout=0.1,
        unroll=1,
    )
    config.optimizer.update(
        name="adamw",
        learning_rate=3e-3,
        weight_decay=0.01,
        clip="global_norm",
        clip_norm=1.0,
        schedule="warmup_cosine",
        warmup_fraction=0.02,
        final_lr_fraction=0.05,
    )
    config.train.update(
        num_epochs=6.0,
        max_seconds=600.0,
        log_every=50,
        eval_every=500,
        checkpoint_every=500,
    )
    return config
