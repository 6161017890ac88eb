"""Character-level LSTM language model on Tiny Shakespeare, trained by truncated BPTT.

eval/loss is validation nats/char over the last 10% of the text (nanoGPT's
shakespeare_char split); eval/bits_per_char beside it.

Presets by wall-clock budget on a 2-core CPU (`--config=experiments/shakespeare_lstm.py:70s`;
the default is 10min): each sizes the model and plans the schedule's steps to finish
within its budget there (`train.max_seconds` stops a slower machine on time). On faster
hardware raise train.num_steps. Measured by bench/shakespeare_lstm.py.
"""

from jaxdl.configs import base_config

PRESETS = {
    "70s": dict(seconds=70, layers=1, hidden=256, dropout=0.0, window=32, lr=7e-3, steps=1000),
    "10min": dict(seconds=600, layers=2, hidden=256, dropout=0.1, window=32, lr=5e-3, steps=4600),
}


def get_config(budget: str = "10min"):
    if budget not in PRESETS:
        raise ValueError(
            f"unknown budget {budget!r} for shakespeare_lstm; use one of {list(PRESETS)}"
        )
    preset = PRESETS[budget]
    config = base_config(model="rnn_lm", task="lm")
    config.data.update(
        name="tiny_shakespeare",
        batch_size=32,  # contiguous streams, each continued from step to step
        eval_batch_size=64,  # eval streams over the validation text
    )
    config.data.window = preset["window"]  # truncation length K: tokens per stream per step
    config.data.eval_fraction = 0.1
    config.model.update(hidden=preset["hidden"], layers=preset["layers"], dropout=preset["dropout"])
    config.optimizer.update(
        name="adamw",
        learning_rate=preset["lr"],
        weight_decay=0.01,
        clip="global_norm",
        clip_norm=1.0,
        schedule="warmup_cosine",
        warmup_fraction=0.02,
        final_lr_fraction=0.05,
    )
    config.train.update(
        num_epochs=0,
        num_steps=preset["steps"],
        max_seconds=float(preset["seconds"]),
        log_every=50,
        eval_every=preset["steps"] // 4,
        checkpoint_every=500,
    )
    return config
