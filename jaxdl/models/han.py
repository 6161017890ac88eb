"""Hierarchical attention network (Yang et al., NAACL 2016) for documents.

A document is token ids (B, S, W): S sentences of W words, id 0 = padding, real words
first in each sentence and real sentences first in each document. Words are encoded in
context by a bidirectional recurrent layer, pooled into a sentence vector by attention
against a learned context vector; sentences likewise into the document vector.

Padding never reaches a real position: the backward direction runs over each row's real
tokens reversed in place (padding stays at the end), so both directions see padding only
after every real token, and attention gives padding exactly zero weight. Adding padding
therefore changes neither the document vector nor the attention on real positions.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl import registry
from jaxdl.errors import check, check_choice
from jaxdl.models.lstm import GRU, LSTM

PAD_ID = 0
OOV_ID = 1  # vocabularies are [padding, out-of-vocabulary, words...]
CELLS = ("gru", "lstm")


def reverse_prefix(xs: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverses the first `lengths[b]` steps of each row of xs (B, T, ...) in place; the
    rest stays where it is. Applying it twice gives xs back."""
    positions = jnp.arange(xs.shape[1])
    index = jnp.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return jnp.take_along_axis(xs, index.reshape(index.shape + (1,) * (xs.ndim - 2)), axis=1)


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the last axis among `mask`ed entries; exactly 0 elsewhere, and an
    all-zero row where nothing is masked in (an empty sentence)."""
    shifted = scores - jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1, keepdims=True)
    weights = jnp.where(mask, jnp.exp(jnp.where(mask, shifted, 0.0)), 0.0)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    return weights / jnp.where(total > 0, total, 1.0)


class BidirectionalRecurrent(nn.Module):
    """Forward and backward recurrent layers over (B, T, D) with real lengths (B,);
    outputs concatenated (B, T, 2H). Outputs at padded positions are not meaningful."""

    hidden: int
    cell: str = "gru"

    def _layer(self, name: str) -> nn.Module:
        return GRU(self.hidden, name=name) if self.cell == "gru" else LSTM(self.hidden, name=name)

    @nn.compact
    def __call__(self, xs: jax.Array, lengths: jax.Array) -> jax.Array:
        forward, backward = self._layer("forward"), self._layer("backward")
        batch = xs.shape[0]
        hs_forward, _ = forward(xs, forward.initial_carry(batch))
        hs_backward, _ = backward(reverse_prefix(xs, lengths), backward.initial_carry(batch))
        return jnp.concatenate([hs_forward, reverse_prefix(hs_backward, lengths)], axis=-1)


class AttentionPool(nn.Module):
    """u = tanh(h W + b); weights = masked softmax(u . context); returns (sum weights h,
    weights) over the second-to-last axis."""

    size: int

    @nn.compact
    def __call__(self, hs: jax.Array, mask: jax.Array):
        keys = jnp.tanh(nn.Dense(self.size, name="projection")(hs))
        context = self.param(
            "context", nn.initializers.normal(stddev=0.1), (self.size,), jnp.float32
        )
        weights = masked_softmax(keys @ context, mask)
        return jnp.einsum("...t,...th->...h", weights, hs), weights


class HierarchicalAttentionEncoder(nn.Module):
    """tokens (B, S, W) int -> (document vectors (B, 2H), word attention (B, S, W),
    sentence attention (B, S)). Attention rows sum to 1 over real positions."""

    vocab_size: int
    embed: int = 100
    hidden: int = 50  # per direction
    attention: int = 100
    cell: str = "gru"  # gru | lstm
    dropout: float = 0.0  # on the embeddings and the sentence vectors

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False):
        batch, num_sentences, num_words = tokens.shape
        drop = nn.Dropout(self.dropout, deterministic=not train)
        word_mask = tokens != PAD_ID
        words = tokens.reshape(batch * num_sentences, num_words)
        word_lengths = word_mask.reshape(words.shape).sum(axis=-1)
        x = drop(nn.Embed(self.vocab_size, self.embed, name="embedding")(words))
        hs = BidirectionalRecurrent(self.hidden, self.cell, name="word_encoder")(x, word_lengths)
        sentences, word_attention = AttentionPool(self.attention, name="word_attention")(
            hs, word_mask.reshape(words.shape)
        )
        sentences = drop(sentences.reshape(batch, num_sentences, -1))
        sentence_mask = word_lengths.reshape(batch, num_sentences) > 0
        hs = BidirectionalRecurrent(self.hidden, self.cell, name="sentence_encoder")(
            sentences, sentence_mask.sum(axis=-1)
        )
        document, sentence_attention = AttentionPool(self.attention, name="sentence_attention")(
            hs, sentence_mask
        )
        return document, word_attention.reshape(tokens.shape), sentence_attention


class HierarchicalAttentionClassifier(nn.Module):
    """The encoder, dropout, and a linear layer: (logits (B, C), word attention,
    sentence attention)."""

    num_classes: int
    vocab_size: int
    embed: int = 100
    hidden: int = 50
    attention: int = 100
    cell: str = "gru"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False):
        document, word_attention, sentence_attention = HierarchicalAttentionEncoder(
            self.vocab_size,
            self.embed,
            self.hidden,
            self.attention,
            self.cell,
            self.dropout,
            name="encoder",
        )(tokens, train)
        document = nn.Dropout(self.dropout, deterministic=not train)(document)
        return nn.Dense(self.num_classes, name="head")(document), word_attention, sentence_attention


@registry.model(
    "han",
    family="document_classifier",
    embed=48,
    hidden=32,
    attention=48,
    cell="gru",  # gru | lstm
    dropout=0.5,
)
def build(cfg, info) -> HierarchicalAttentionClassifier:
    check_choice("model.cell", cfg.cell, CELLS)
    check(
        min(cfg.embed, cfg.hidden, cfg.attention) > 0,
        "model.embed, model.hidden and model.attention must be positive",
    )
    check(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    return HierarchicalAttentionClassifier(
        num_classes=len(info["class_names"]),
        vocab_size=len(info["words"]),
        embed=cfg.embed,
        hidden=cfg.hidden,
        attention=cfg.attention,
        cell=cfg.cell,
        dropout=cfg.dropout,
    )
