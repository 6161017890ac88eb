"""Print text sampled from a trained language model:

    python launch/sample.py --workdir=runs/shakespeare_lstm --prompt="ROMEO:" --length=500

Loads the newest checkpoint (or --step) and the vocabulary saved with the run; the same
--seed gives the same text.
"""

from _tool import define_step_flag, tool_main
from absl import app, flags

flags.DEFINE_string("workdir", None, "Run directory of a language-model run.")
flags.DEFINE_string("prompt", "\n", "Text to continue (characters of the run's vocabulary).")
flags.DEFINE_integer("length", 500, "Characters to sample after the prompt.")
flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = greedy.")
flags.DEFINE_integer("top_k", 0, "Sample from the k most likely characters only (0 = all).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
define_step_flag()
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


@tool_main
def main():
    import jax
    import jax.numpy as jnp

    from jaxdl.data import CharVocab
    from jaxdl.errors import check
    from jaxdl.train.run_info import load_run

    check(FLAGS.length > 0, f"--length={FLAGS.length} must be positive")
    check(FLAGS.temperature >= 0, f"--temperature={FLAGS.temperature} must be >= 0")
    check(FLAGS.top_k >= 0, f"--top_k={FLAGS.top_k} must be >= 0")
    check(FLAGS.prompt != "", "--prompt must not be empty")
    config, info, task, state = load_run(FLAGS.workdir, FLAGS.step)
    check(config.task.name == "lm", f"{FLAGS.workdir} is a {config.task.name!r} run, not lm")
    vocab = CharVocab(info["vocab"])
    check(FLAGS.top_k <= vocab.size, f"--top_k={FLAGS.top_k} exceeds the {vocab.size} chars")
    prompt = jnp.asarray(vocab.encode(FLAGS.prompt))
    sample = jax.jit(task.sample, static_argnums=(2, 4, 5))
    tokens = sample(
        state.params,
        prompt,
        FLAGS.length,
        jax.random.PRNGKey(FLAGS.seed),
        FLAGS.temperature,
        FLAGS.top_k,
    )
    print(FLAGS.prompt + vocab.decode(jax.device_get(tokens)))
    return 0


if __name__ == "__main__":
    app.run(main)
