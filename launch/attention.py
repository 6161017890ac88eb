"""Attention pages of a document-classification run: one HTML page per document for a
sample of its eval documents (the held-out fold), plus index.html.

    python launch/attention.py --workdir=runs/han --num_docs=20 [--out=DIR] [--step=N]

Each page shades every sentence by its sentence attention and every word by its word
attention (jaxdl/viz/attention.py) and gives the predicted label with its probability.
Documents are read again from the run's data config and encoded with the vocabulary and
truncation limits saved with the run. Pages go to --out (default WORKDIR/attention).
"""

from pathlib import Path

from _tool import define_step_flag, tool_main
from absl import app, flags

flags.DEFINE_string("workdir", None, "Run directory of a classify_documents run.")
flags.DEFINE_string("out", None, "Where the pages go (default: WORKDIR/attention).")
flags.DEFINE_integer("num_docs", 20, "Eval documents to draw (a seeded random sample).")
flags.DEFINE_integer("seed", 0, "Seed of the sample.")
define_step_flag()
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


@tool_main
def main():
    import jax
    import numpy as np

    from jaxdl.data import documents
    from jaxdl.data.inputs import read_documents
    from jaxdl.errors import check
    from jaxdl.train.run_info import load_run
    from jaxdl.viz import attention as attention_view

    check(FLAGS.num_docs > 0, f"--num_docs={FLAGS.num_docs} must be positive")
    config, info, task, state = load_run(FLAGS.workdir, FLAGS.step)
    check(
        config.task.name == "classify_documents",
        f"{FLAGS.workdir} is a {config.task.name!r} run, not classify_documents",
    )
    _, eval_docs, class_names, _ = read_documents(config.data)
    rng = np.random.default_rng(FLAGS.seed)
    chosen = sorted(rng.choice(len(eval_docs), min(FLAGS.num_docs, len(eval_docs)), False))
    sample = [eval_docs[i] for i in chosen]
    keep = info.get("keep_sentences", "first")  # runs from before the option kept the first
    encoded = documents.encode(
        sample, info["words"], info["max_sentences"], info["max_words"], keep
    )
    probabilities, word_attention, sentence_attention = jax.device_get(
        jax.jit(task.predict)(state, encoded.tokens)
    )
    out = Path(FLAGS.out or Path(FLAGS.workdir) / "attention")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, doc in enumerate(sample):
        page = attention_view.document_page(
            doc.name,
            doc.sentences,
            word_attention[i],
            sentence_attention[i],
            class_names,
            doc.label,
            probabilities[i].tolist(),
            documents.first_read_sentence(len(doc.sentences), info["max_sentences"], keep),
        )
        (out / f"{doc.name}.html").write_text(page, encoding="utf-8")
        predicted = int(np.argmax(probabilities[i]))
        rows.append(
            {
                "name": doc.name,
                "href": f"{doc.name}.html",
                "label": class_names[doc.label],
                "predicted": class_names[predicted],
                "probability": float(probabilities[i, predicted]),
            }
        )
    correct = sum(r["label"] == r["predicted"] for r in rows)
    title = (
        f"Attention of {Path(FLAGS.workdir).name} (step {int(state.step)}, "
        f"fold {info.get('fold')}): {correct} of {len(rows)} sampled documents correct"
    )
    (out / "index.html").write_text(attention_view.index_page(title, rows), encoding="utf-8")
    print(f"{len(rows)} pages and index.html in {out}")
    return 0


if __name__ == "__main__":
    app.run(main)
