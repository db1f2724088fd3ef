"""The report as a list of blocks, rendered to Markdown or to a minimal HTML page (no markdown package needed).

Text may hold inline Markdown: `code`, **bold** and [links](target); the HTML renderer converts just those.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report
    alt: str


@dataclass(frozen=True)
class Preformatted:
    text: str


Block = Heading | Paragraph | Table | Image | Preformatted


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Paragraph):
            parts.append(b.text)
        elif isinstance(b, Table):
            cell = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            lines = ["| " + " | ".join(map(cell, b.header)) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(map(cell, row)) + " |" for row in b.rows]
            parts.append("\n".join(lines))
        elif isinstance(b, Image):
            parts.append(f"![{b.alt}]({b.path})")
        else:
            parts.append(f"```\n{b.text}\n```")
    return "\n\n".join(parts) + "\n"


def inline_html(text: str) -> str:
    text = html.escape(str(text), quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{inline_html(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{inline_html(c)}</th>" for c in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(b, Image):
            body.append(f'<p><img src="{html.escape(b.path)}" alt="{html.escape(b.alt)}"></p>')
        else:
            body.append(f"<pre>{html.escape(b.text)}</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}img{max-width:100%}"
             "pre{background:#f4f4f4;padding:6px;overflow-x:auto}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
