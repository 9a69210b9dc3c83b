"""Small HTML builders for the report: every piece returns a string, every text goes through ``escape``.

The page is self-contained: styles are inline, pictures are relative links to files beside the page, and
nothing is fetched from the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1320px;
       color: #222; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 19px; margin-top: 34px;
       border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sheet { width: 100%; table-layout: fixed; }
table.sheet td { padding: 3px; } table.sheet img { width: 100%; display: block; }
table.sheet td.meta { font-size: 12px; word-break: break-all; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #555; margin-right: 4px;
          vertical-align: middle; }
.legend span.item { margin-right: 14px; white-space: nowrap; font-size: 13px; }
.note { color: #8a5a00; } .muted { color: #777; font-size: 13px; }
.banner { background: #fff3cd; border: 1px solid #d9a400; padding: 6px 14px; margin: 12px 0; }
.banner p { margin: 6px 0; color: #6b4500; }
figure { margin: 10px 0; } figcaption { color: #666; font-size: 13px; }
"""


def page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    """A complete HTML document."""
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{escape(title)}</h1>\n<p class="sub">{escape(subtitle)}</p>\n{body}\n</body>\n</html>\n'
    )


def section(title: str, *parts: str, anchor: str = "") -> str:
    attr = f' id="{escape(anchor)}"' if anchor else ""
    return f"<section{attr}>\n<h2>{escape(title)}</h2>\n" + "\n".join(p for p in parts if p) + "\n</section>"


def banner(lines: Sequence[str]) -> str:
    """A warning box at the top of the page, one paragraph per line ("" without lines)."""
    if not lines:
        return ""
    return '<div class="banner" id="banner">\n' + "\n".join(f"<p>{escape(t)}</p>" for t in lines) + "\n</div>"


def paragraph(text: str, cls: str = "") -> str:
    attr = f' class="{escape(cls)}"' if cls else ""
    return f"<p{attr}>{escape(text)}</p>"


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[str | float | int | None]],
    numeric: Sequence[bool] | None = None,
    cls: str = "",
) -> str:
    """A table of plain values (escaped); ``numeric`` right-aligns columns; no header row without headers."""
    attr = f' class="{escape(cls)}"' if cls else ""
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>\n" if headers else ""
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            td = '<td class="num">' if numeric is not None and numeric[i] else "<td>"
            cells.append(f"{td}{escape('' if value is None else str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{attr}>\n{head}" + "\n".join(body) + "\n</table>"


def figure(src: str, alt: str, caption: str = "", width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{escape(src)}" alt="{escape(alt)}"{size}>{cap}</figure>'


def class_legend(names: Sequence[str], colors: Sequence[tuple[int, int, int]]) -> str:
    """Colour swatches with class names (plus the ignore colour)."""
    items = [
        f'<span class="item"><span class="swatch" style="background: rgb{tuple(c)}"></span>{escape(n)}</span>'
        for n, c in zip(names, colors, strict=True)
    ]
    items.append(
        '<span class="item"><span class="swatch" style="background: rgb(0, 0, 0)"></span>ignore / unlabelled</span>'
    )
    return '<p class="legend">' + "".join(items) + "</p>"


def sheet(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[tuple[str, str] | None]]]) -> str:
    """A picture sheet: each row = (caption HTML-escaped text, one (src, alt) per column or None)."""
    head = '<th style="width: 11%">image id</th>' + "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for caption, cells in rows:
        tds = [f'<td class="meta">{escape(caption)}</td>']
        for cell in cells:
            tds.append(
                "<td></td>"
                if cell is None
                else f'<td><img src="{escape(cell[0])}" alt="{escape(cell[1])}" loading="lazy"></td>'
            )
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="sheet">\n<tr>{head}</tr>\n' + "\n".join(body) + "\n</table>"
