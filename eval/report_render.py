"""The report's renderers: Markdown (figures linked by relative path) and one self-contained HTML page (figures
embedded as base64 data URIs, inline CSS and one inline script, nothing fetched from elsewhere, so it opens offline).

The HTML page is made to be read on a laptop: contents linking to every section, tables that scroll inside their own
box rather than widening the page, columns sorted by a click on their header, and the best value of each ranked
column (eval.metric_directions) marked, as the Markdown marks it in bold.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

from core.atomic import write_text
from eval.metric_directions import HIGHER, LOWER, NEAR_ONE, SYMBOLS
from eval.report_blocks import Block, Bullets, FigureBlock, Heading, Paragraph, Table, best_cells, cell_value

CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222;
       overflow-wrap: anywhere; }
nav#contents { background: #f6f6f6; padding: 0.5em 1em; margin: 1em 0; }
nav#contents ol { margin: 0.2em 0; }
h2 a.to-contents { font-size: 0.6em; font-weight: normal; text-decoration: none; margin-left: 0.5em; }
figure.table { margin: 1em 0; }
.table-scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: separate; border-spacing: 0; border: solid #bbb; border-width: 1px 0 0 1px;
        font-size: 0.9em; }
th, td { border: solid #bbb; border-width: 0 1px 1px 0; padding: 0.3em 0.6em; text-align: right; }
td { white-space: nowrap; }
th { background: #eee; vertical-align: bottom; overflow-wrap: normal; }
th.text, td.text { text-align: left; }
th:first-child, td:first-child { position: sticky; left: 0; }  /* the row's name stays while a table scrolls */
td:first-child { background: #fff; }
td.best { font-weight: bold; background: #dff0d8; }
th button.sort { font: inherit; font-weight: bold; color: inherit; background: none; border: 0; padding: 0;
                 text-align: inherit; cursor: pointer; }
th[aria-sort="ascending"] button.sort::after { content: " ▲"; }
th[aria-sort="descending"] button.sort::after { content: " ▼"; }
.better { color: #2a6a2a; white-space: nowrap; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; font-size: 0.9em; padding-bottom: 0.3em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.note { color: #a15c00; }
"""

# Click a column's header to sort its table by that column, again to reverse; numbers (a cell's data-value) sort
# as numbers, words as words, and cells with no number stay last.
SORT_SCRIPT = """
document.addEventListener("click", (event) => {
  const header = event.target.closest("table.sortable thead th");
  if (!header) return;
  const body = header.closest("table").tBodies[0], column = header.cellIndex;
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const other of header.parentNode.cells) other.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const rows = Array.from(body.rows), sign = ascending ? 1 : -1;
  const value = (row) => row.cells[column].dataset.value;
  const numeric = rows.some((row) => value(row) !== undefined);
  rows.sort((a, b) => {
    if (!numeric) return sign * a.cells[column].textContent.localeCompare(b.cells[column].textContent, undefined,
                                                                        {numeric: true});
    if (value(a) === undefined || value(b) === undefined) return (value(a) === undefined) - (value(b) === undefined);
    return sign * (Number(value(a)) - Number(value(b)));
  });
  body.append(...rows);
});
"""

RANKED = (f"{SYMBOLS[LOWER]} lower is better, {SYMBOLS[HIGHER]} higher is better, {SYMBOLS[NEAR_ONE]} closer to 1 "
          "is better")
HTML_LEGEND = (f"Tables: click a column's header to sort by it. {RANKED}; the best value of such a column is shaded "
               "and bold (reference rows are not ranked).")
MARKDOWN_LEGEND = f"In the tables, {RANKED}; the best value of such a column is in bold (reference rows not ranked)."


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def header_label(table: Table, column: int) -> str:
    """A column's header, with the symbol of its better direction when it is ranked."""
    direction = table.better[column] if column < len(table.better) else None
    return table.header[column] + (f" {SYMBOLS[direction]}" if direction else "")


def render_markdown(blocks: Sequence[Block], markdown_dir: Path) -> str:
    """Markdown; figures are linked relative to the folder the .md file is written to; best values in bold."""
    parts = []
    legend_shown = False
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(f"> **Note:** {block.text}" if block.note else block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            if any(block.better) and not legend_shown:
                parts.append(MARKDOWN_LEGEND)
                legend_shown = True
            best = best_cells(block)
            header = [header_label(block, column) for column in range(len(block.header))]
            lines = [f"*{block.caption}*", "", "| " + " | ".join(map(markdown_cell, header)) + " |",
                     "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(f"**{markdown_cell(cell)}**" if (row, column) in best else markdown_cell(cell)
                                        for column, cell in enumerate(cells)) + " |"
                      for row, cells in enumerate(block.rows)]
            parts.append("\n".join(lines))
        elif isinstance(block, FigureBlock):
            relative = Path(os.path.relpath(block.path.resolve(), markdown_dir.resolve())).as_posix()
            parts.append(f"![{block.caption}]({relative})\n\n*{block.caption}*")
        else:
            parts.append(f"```\n{block.text.rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


def anchors(blocks: Sequence[Block]) -> dict[int, str]:
    """A unique id for every level-2 and level-3 heading (by block position); a level-3 one starts with its section's,
    so the "64x64" of two sections differ."""
    ids: dict[int, str] = {}
    taken = {"contents"}
    section = ""
    for position, block in enumerate(blocks):
        if not isinstance(block, Heading) or block.level not in (2, 3):
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", block.text.lower()).strip("-") or "section"
        if block.level == 2:
            section = slug
        else:
            slug = f"{section}-{slug}" if section else slug
        unique, count = slug, 1
        while unique in taken:
            count += 1
            unique = f"{slug}-{count}"
        taken.add(unique)
        ids[position] = unique
        if block.level == 2:
            section = unique
    return ids


def contents(blocks: Sequence[Block], ids: dict[int, str]) -> str:
    """The contents: every section, its subsections nested, each a link to its heading; then how to read tables."""
    escape = html.escape
    sections: list[tuple[str, list[str]]] = []  # (link to a section, links to its subsections)
    for position, anchor in ids.items():
        block = blocks[position]
        link = f'<a href="#{anchor}">{escape(block.text)}</a>'
        if block.level == 2 or not sections:
            sections.append((link, []))
        else:
            sections[-1][1].append(link)
    items = "".join(f"<li>{link}" + (f"<ol>{''.join(f'<li>{sub}</li>' for sub in subsections)}</ol>"
                                     if subsections else "") + "</li>" for link, subsections in sections)
    return f'<nav id="contents"><h2>Contents</h2><ol>{items}</ol><p>{escape(HTML_LEGEND)}</p></nav>'


def html_table(table: Table) -> str:
    """A table in its own scroll box, sortable by any column, its best values marked, words aligned left."""
    escape = html.escape
    best = best_cells(table)
    values = [[cell_value(cell) for cell in cells] for cells in table.rows]
    words = {column for column in range(len(table.header)) if all(row[column] is None for row in values)}
    headers = []
    for column, label in enumerate(table.header):
        direction = table.better[column] if column < len(table.better) else None
        symbol = (f' <span class="better" title="{escape(direction)} is better">{SYMBOLS[direction]}</span>'
                  if direction else "")
        css_class = ' class="text"' if column in words else ""
        headers.append(f'<th scope="col"{css_class}><button type="button" class="sort">{escape(label)}{symbol}'
                       "</button></th>")
    rows = []
    for row, cells in enumerate(table.rows):
        tds = []
        for column, cell in enumerate(cells):
            value = values[row][column]
            attributes = "" if value is None else f' data-value="{value!r}"'
            if (row, column) in best:
                attributes += f' class="best" title="best: {escape(table.better[column] or "")} is better"'
            elif column in words:
                attributes += ' class="text"'
            tds.append(f"<td{attributes}>{escape(cell)}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<figure class="table"><figcaption>{escape(table.caption)}</figcaption><div class="table-scroll">'
            f'<table class="sortable"><thead><tr>{"".join(headers)}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div></figure>")


def render_html(blocks: Sequence[Block]) -> str:
    """One self-contained HTML page: contents, inline CSS and script, figures as data URIs, nothing from elsewhere."""
    escape = html.escape
    ids = anchors(blocks)
    parts = []
    for position, block in enumerate(blocks):
        if isinstance(block, Heading):
            if position == min(ids, default=-1):  # the contents go before the first section
                parts.append(contents(blocks, ids))
            anchor = f' id="{ids[position]}"' if position in ids else ""
            back = ' <a class="to-contents" href="#contents" title="contents">&#8593; contents</a>' \
                if block.level == 2 else ""
            parts.append(f"<h{block.level}{anchor}>{escape(block.text)}{back}</h{block.level}>")
        elif isinstance(block, Paragraph):
            css_class = ' class="note"' if block.note else ""
            parts.append(f"<p{css_class}>{escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(html_table(block))
        elif isinstance(block, FigureBlock):
            encoded = base64.b64encode(block.path.read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(block.caption)}">'
                         f"<figcaption>{escape(block.caption)}</figcaption></figure>")
        else:
            parts.append(f"<pre>{escape(block.text)}</pre>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>LapCVAE benchmark: comparison report</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n<script>{SORT_SCRIPT}</script>\n</body></html>\n")


write_text_atomically = write_text  # the name the report command used; the writer is core.atomic's
