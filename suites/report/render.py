"""The report document and its two renderers: markdown and self-contained HTML.

A report is data (sections holding paragraphs, bullet lists, tables of formatted strings,
code and images) rendered twice by the functions here, so the two formats cannot disagree.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xentbench.suites.judge.verdicts import VERDICTS


@dataclass
class Table:
    """A table whose cells are already formatted strings."""

    frame: pd.DataFrame


@dataclass
class Code:
    text: str


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Section:
    """A heading and its blocks: ``str`` paragraph, ``list[str]`` bullets, Table, Code, Image."""

    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2


def render_markdown(sections: list[Section]) -> str:
    lines: list[str] = []
    for section in sections:
        lines += ["#" * section.level + " " + section.title, ""]
        lines += [_markdown_block(block) + "\n" for block in section.blocks]
    return "\n".join(lines)


def _markdown_block(block: Any) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, list):
        return "\n".join(f"- {item}" for item in block)
    if isinstance(block, Table):
        frame = block.frame.map(lambda cell: str(cell).replace("|", "\\|"))
        return frame.to_markdown(index=False, disable_numparse=True)
    if isinstance(block, Code):
        return f"```text\n{block.text}\n```"
    return f"![{block.alt}]({block.path.name})"


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1300px;padding:0 1em;color:#222}
h1{font-size:1.7em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.1em}
table{border-collapse:collapse;margin:.6em 0;font-size:12.5px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}tr:nth-child(even) td{background:#fafafa}
td.pass{background:#e6f4e6!important}td.inaccurate{background:#fff2cc!important}
td.wrong{background:#f8d0d0!important}td.error{background:#e8d5f0!important}
td.unsupported{color:#888}td.num{text-align:right}code,pre{background:#f5f5f5;border-radius:3px}
pre{padding:.6em;overflow-x:auto}img{max-width:100%;border:1px solid #eee}
"""


def render_html(sections: list[Section], title: str = "xentbench report") -> str:
    body = []
    for section in sections:
        tag = f"h{section.level}"
        body.append(f'<{tag} id="{anchor(section.title)}">{_inline(section.title)}</{tag}>')
        body += [_html_block(block) for block in section.blocks]
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def anchor(title: str) -> str:
    """The id GitHub's markdown gives a heading (for simple titles), so links work in both."""
    return re.sub(r"[^a-z0-9_]+", "-", title.lower()).strip("-")


# [text](target) with an #anchor or http(s) target, or a bare http(s) URL (escaped text: no
# quote or angle bracket can occur inside, so the href attribute cannot be broken out of).
_LINK = re.compile(r"\[([^\]]+)\]\((#[\w-]+|https?://[^\s()]+)\)|(https?://[^\s<>()\[\]]+)")


def _link(match: re.Match) -> str:
    text, target, bare = match.groups()
    if bare is not None:
        trailing = re.search(r"[.,;:!?]+$", bare)  # sentence punctuation after a bare URL
        cut = trailing.start() if trailing else len(bare)
        return f'<a href="{bare[:cut]}">{bare[:cut]}</a>{bare[cut:]}'
    return f'<a href="{target}">{text}</a>'


def _inline(text: str) -> str:
    """Escape, then the inline markdown the report uses: `code`, **bold**, [link](#anchor or
    http(s) URL) and bare http(s) URLs as links."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return _LINK.sub(_link, text)


def _html_block(block: Any) -> str:
    if isinstance(block, str):
        return f"<p>{_inline(block)}</p>"
    if isinstance(block, list):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block.frame)
    if isinstance(block, Code):
        return f"<pre><code>{html.escape(block.text)}</code></pre>"
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    alt = html.escape(block.alt)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"></figure>'


_NUMERIC = re.compile(r"^-?\d+(\.\d+)?(e[+-]?\d+)?( ?(%|×|ns|µs|ms|s))?$")


def _html_table(frame: pd.DataFrame) -> str:
    """A plain table; a cell starting with a verdict gets that verdict's colour."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for cell in map(str, record):
            word = cell.split(" ", 1)[0]
            css = word if word in VERDICTS else "num" if _NUMERIC.match(cell) else ""
            css = f' class="{css}"' if css else ""
            cells.append(f"<td{css}>{_inline(cell)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
