"""The report's markup: one self-contained HTML page, readable without JavaScript or network.

Figures are PNG data URIs, the style sheet is inline, every text is escaped, and links only
point within the page (``#anchor``), so the file can be mailed or attached to a CI run.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1400px; margin: 1.5em auto; padding: 0 1.2em; color: #1a1a1a;
       line-height: 1.45; }
h1 { border-bottom: 2px solid #0072B2; padding-bottom: .2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; padding-bottom: .15em; }
h3 { margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .92em; }
th, td { border: 1px solid #d0d0d0; padding: .25em .55em; text-align: left;
         vertical-align: top; }
th { background: #f2f2f2; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
tfoot td { font-size: .88em; color: #444; }
tr.failed td { background: #fbe9e1; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { font-size: .9em; color: #333; margin-top: .3em; max-width: 70em; }
.notice { background: #fff6e0; border-left: 4px solid #E69F00; padding: .45em .8em;
          margin: .6em 0; }
.notice ul { margin: .2em 0; }
nav ul { columns: 2; }
"""


@dataclass
class EmbeddedFigure:
    """A drawn figure: its file stem (for ``--figures``), caption and PNG bytes."""

    name: str
    caption: str
    png: bytes
    pdf: bytes | None = None
    alt: str = ""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def notice(lines: Sequence[str], head: str) -> str:
    """A visible box: ``head`` in bold, then the lines (nothing when there are none)."""
    if not lines:
        return ""
    strong = f"<strong>{esc(head)}:</strong>"
    if len(lines) == 1:
        return f'<div class="notice">{strong} {esc(lines[0])}</div>'
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<div class="notice">{strong}<ul>{items}</ul></div>'


def missing(lines: Sequence[str], what: str = "") -> str:
    """A box listing what could not be shown, and why."""
    return notice(lines, f"Missing {what}".strip())


def figure(fig: EmbeddedFigure) -> str:
    """An ``<img>`` holding the PNG itself as a base64 data URI, with its caption."""
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="fig-{esc(fig.name)}"><img src="data:image/png;base64,{data}" '
        f'alt="{esc(fig.alt or fig.name)}"><figcaption>{esc(fig.caption)}</figcaption></figure>'
    )


def key_value_table(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], failed: Sequence[bool] = ()
) -> str:
    """A plain table; rows flagged in ``failed`` are tinted."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    lines = []
    flags = list(failed)
    for i, row in enumerate(rows):
        cls = ' class="failed"' if i < len(flags) and flags[i] else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def heading(level: int, text: str, anchor: str = "") -> str:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{esc(text)}</h{level}>"


def page(title: str, intro: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are (title, anchor, body markup)."""
    toc = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for t, a, _ in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        heading(1, title),
        intro,
        f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>" if sections else "",
    ]
    for name, anchor, body in sections:
        parts += [f'<section id="{esc(anchor)}">', heading(2, name), body, "</section>"]
    parts += ["</body>", "</html>"]
    return "\n".join(p for p in parts if p) + "\n"
