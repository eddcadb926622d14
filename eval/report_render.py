"""The report's renderers: Markdown (figures linked by relative path) and one self-contained HTML page (figures
embedded as base64 data URIs, inline CSS, no scripts, fonts or style sheets from elsewhere, so it opens offline).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

from core.atomic import write_text
from eval.report_blocks import Block, Bullets, FigureBlock, Heading, Paragraph, Table

CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
caption { caption-side: top; font-style: italic; text-align: left; padding-bottom: 0.3em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.note { color: #a15c00; }
"""



def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block], markdown_dir: Path) -> str:
    """Markdown; figures are linked relative to the folder the .md file is written to."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(f"> **Note:** {block.text}" if block.note else block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = [f"*{block.caption}*", "", "| " + " | ".join(map(markdown_cell, block.header)) + " |",
                     "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, FigureBlock):
            relative = Path(os.path.relpath(block.path.resolve(), markdown_dir.resolve())).as_posix()
            parts.append(f"![{block.caption}]({relative})\n\n*{block.caption}*")
        else:
            parts.append(f"```\n{block.text.rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


def render_html(blocks: Sequence[Block]) -> str:
    """One self-contained HTML page: inline CSS, figures as data URIs, nothing fetched from elsewhere."""
    escape = html.escape
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            css_class = ' class="note"' if block.note else ""
            parts.append(f"<p{css_class}>{escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            header = "".join(f"<th>{escape(cell)}</th>" for cell in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
                           for row in block.rows)
            parts.append(f"<table><caption>{escape(block.caption)}</caption><thead><tr>{header}</tr></thead>"
                         f"<tbody>{rows}</tbody></table>")
        elif isinstance(block, FigureBlock):
            encoded = base64.b64encode(block.path.read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(block.caption)}">'
                         f"<figcaption>{escape(block.caption)}</figcaption></figure>")
        else:
            parts.append(f"<pre>{escape(block.text)}</pre>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>LapCVAE benchmark: comparison report</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


write_text_atomically = write_text  # the name the report command used; the writer is core.atomic's
