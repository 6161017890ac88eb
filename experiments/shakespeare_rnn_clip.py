"""Clipping demo, the clipped half: shakespeare_rnn_noclip.py with the gradient clipped to
global norm 1. The same run stays finite and learns."""

from experiments import shakespeare_rnn_noclip


def get_config():
    config = shakespeare_rnn_noclip.get_config()
    config.optimizer.update(clip="global_norm", clip_norm=1.0)
    return config
