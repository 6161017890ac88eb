"""HTML pages that show a hierarchical attention model's attention on a document, as in
Yang et al. (2016), figures 5 and 6: each sentence shaded by its sentence attention (a bar
on the left, blue), each word by its word attention (red); the exact weights are in each
element's `data-weight` and tooltip. Pure functions: text in, text out.
"""

import html
from collections.abc import Sequence

_STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; line-height: 1.7; }
.sentence { border-left: 0.6em solid; padding-left: 0.5em; margin: 0.15em 0; }
.word { padding: 0 0.1em; border-radius: 0.2em; }
.cut { color: #999; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; text-align: left; }
.wrong { color: #b00; }
"""


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


def _shade(weight: float, peak: float) -> float:
    """Opacity in [0, 1]: the weight relative to the largest in its group."""
    return 0.0 if peak <= 0 else min(1.0, weight / peak)


def document_page(
    name: str,
    sentences: Sequence[Sequence[str]],
    word_attention,
    sentence_attention,
    class_names: Sequence[str],
    label: int,
    probabilities: Sequence[float],
    first_read: int = 0,
) -> str:
    """One document's page. `word_attention` (S, W) and `sentence_attention` (S,) are the
    model's weights for the words it read: word w of sentence first_read + s of the
    document, for s < S and w < W; words beyond the truncation limits are shown grey,
    marked 'not read'."""
    predicted = max(range(len(probabilities)), key=lambda c: probabilities[c])
    verdict = "correct" if predicted == label else "wrong"
    body = [
        f"<h1>{html.escape(name)}</h1>",
        f'<p class="{verdict}">predicted <b>{html.escape(class_names[predicted])}</b> '
        f"with probability {probabilities[predicted]:.3f}; true label "
        f"<b>{html.escape(class_names[label])}</b> ({verdict})</p>",
        "<p>Sentence attention: blue bar; word attention: red, relative to the largest "
        "weight in the sentence. Hover for the weights.</p>",
    ]
    num_read_sentences, num_read_words = len(sentence_attention), len(word_attention[0])
    sentence_peak = max((float(w) for w in sentence_attention), default=0.0)
    for index, words in enumerate(sentences):
        s = index - first_read
        read = 0 <= s < num_read_sentences
        weight = float(sentence_attention[s]) if read else 0.0
        alpha = _shade(weight, sentence_peak)
        spans = []
        word_peak = max((float(w) for w in word_attention[s]), default=0.0) if read else 0.0
        for w, word in enumerate(words):
            if read and w < num_read_words:
                word_weight = float(word_attention[s][w])
                spans.append(
                    f'<span class="word" data-weight="{word_weight:.6f}" '
                    f'title="{word_weight:.4f}" style="background: rgba(230, 50, 20, '
                    f'{_shade(word_weight, word_peak):.3f})">{html.escape(word)}</span>'
                )
            else:
                spans.append(
                    f'<span class="word cut" title="not read (truncated)">{html.escape(word)}'
                    "</span>"
                )
        title = f"{weight:.4f}" if read else "not read (truncated)"
        body.append(
            f'<div class="sentence" data-weight="{weight:.6f}" title="{title}" '
            f'style="border-color: rgba(20, 80, 230, {alpha:.3f})">{" ".join(spans)}</div>'
        )
    return _page(name, body)


def index_page(title: str, rows: Sequence[dict]) -> str:
    """A table linking each document page: rows of name, href, label, predicted (class
    names) and probability (of the predicted class)."""
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<table><tr><th>document</th><th>label</th><th>predicted</th><th>probability</th></tr>",
    ]
    for row in rows:
        wrong = ' class="wrong"' if row["label"] != row["predicted"] else ""
        body.append(
            f'<tr{wrong}><td><a href="{html.escape(row["href"], quote=True)}">'
            f"{html.escape(row['name'])}</a></td><td>{html.escape(row['label'])}</td>"
            f"<td>{html.escape(row['predicted'])}</td><td>{row['probability']:.3f}</td></tr>"
        )
    body.append("</table>")
    return _page(title, body)
