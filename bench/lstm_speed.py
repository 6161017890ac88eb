"""Training throughput (tokens/s) of an LSTM language model: autodiff vs explicit BPTT.

    python bench/lstm_speed.py [--hidden=256 --layers=2 --batch=64 --window=128]

One jitted step = forward over a window, loss, backward, clip_by_global_norm(1) + Adam;
the carry is passed from step to step. Median of 5 repeats of 5 steps after compiling.
If PyTorch is installed (`pip install torch==2.13.0`; never a jaxdl dependency), the same
model and step with torch.nn.LSTM is measured side by side as the reference.
Writes bench/results/lstm_speed.md.
"""

import statistics
import sys
import time
from pathlib import Path

import jax
import optax
from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from jaxdl import losses  # noqa: E402
from jaxdl.models.lstm import RecurrentLanguageModel  # noqa: E402

flags.DEFINE_integer("hidden", 256, "LSTM width.")
flags.DEFINE_integer("layers", 2, "LSTM layers.")
flags.DEFINE_integer("batch", 64, "Streams per step.")
flags.DEFINE_integer("window", 128, "Tokens per stream per step (truncation length).")
FLAGS = flags.FLAGS
VOCAB = 65  # Tiny Shakespeare's characters


def tokens_per_second(backward: str) -> tuple[float, int]:
    """(tokens/s, bytes of temporary memory of the compiled step) for one backward."""
    model = RecurrentLanguageModel(VOCAB, FLAGS.hidden, FLAGS.layers, backward=backward)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (FLAGS.batch, FLAGS.window + 1), 0, VOCAB)
    carries = model.initial_carry(FLAGS.batch)
    params = model.init(jax.random.PRNGKey(1), tokens[:, :-1], carries)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

    @jax.jit
    def step(params, opt_state, carries):
        def loss_fn(params):
            logits, new = model.apply(params, tokens[:, :-1], carries)
            return losses.softmax_cross_entropy(logits, tokens[:, 1:]).mean(), new

        (_, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, jax.lax.stop_gradient(new)

    state = (params, optimizer.init(params), carries)
    temp_bytes = step.lower(*state).compile().memory_analysis().temp_size_in_bytes
    state = step(*state)
    jax.block_until_ready(state)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(5):
            state = step(*state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return 5 * FLAGS.batch * FLAGS.window / statistics.median(times), temp_bytes


def torch_tokens_per_second() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    embed = torch.nn.Embedding(VOCAB, FLAGS.hidden)
    lstm = torch.nn.LSTM(FLAGS.hidden, FLAGS.hidden, FLAGS.layers, batch_first=True)
    head = torch.nn.Linear(FLAGS.hidden, VOCAB)
    params = [*embed.parameters(), *lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    tokens = torch.randint(0, VOCAB, (FLAGS.batch, FLAGS.window + 1))
    zeros = torch.zeros(FLAGS.layers, FLAGS.batch, FLAGS.hidden)
    carry = (zeros, zeros.clone())

    def step(carry):
        out, carry = lstm(embed(tokens[:, :-1]), carry)
        logits = head(out)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return tuple(c.detach() for c in carry)

    carry = step(carry)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(5):
            carry = step(carry)
        times.append(time.perf_counter() - start)
    return 5 * FLAGS.batch * FLAGS.window / statistics.median(times)


def main(_) -> None:
    shape = f"{FLAGS.layers} layers x {FLAGS.hidden}, batch {FLAGS.batch}, window {FLAGS.window}"
    rates = {backward: tokens_per_second(backward) for backward in ("autodiff", "explicit")}
    reference = torch_tokens_per_second()
    lines = [
        f"# LSTM LM training throughput ({shape}; median of 5)",
        "",
        f"jax {jax.__version__}, {jax.devices()[0].platform}",
        "",
        "| backward | tokens/s | step temp memory (XLA) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {rate:.0f} | {temp / 2**20:.1f} MiB |" for name, (rate, temp) in rates.items()
    ]
    if reference:
        lines.append(f"| torch.nn.LSTM (reference) | {reference:.0f} | - |")
    speedup = rates["explicit"][0] / rates["autodiff"][0]
    memory = rates["explicit"][1] / rates["autodiff"][1]
    lines += ["", f"explicit / autodiff: {speedup:.2f}x tokens/s, {memory:.2f}x temp memory"]
    if reference:
        lines.append(f"explicit / torch: {rates['explicit'][0] / reference:.2f}")
    table = "\n".join(lines) + "\n"
    print(table)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "lstm_speed.md").write_text(table)


if __name__ == "__main__":
    from absl import app

    app.run(main)
