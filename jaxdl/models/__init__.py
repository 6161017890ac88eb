"""Pure Flax Linen modules: no optimizers, devices or files."""

from jaxdl.models.cnn import CNN
from jaxdl.models.lstm import LSTM, RecurrentLanguageModel, SimpleRNN

__all__ = ["CNN", "LSTM", "RecurrentLanguageModel", "SimpleRNN"]
