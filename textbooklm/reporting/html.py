"""Small HTML building blocks for the report: escaped tables, figures, sections, the page shell.

Plain string building (no template engine) keeps the report dependency-free and the output easy to
diff. Every value goes through :func:`esc`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from textbooklm.report.plots import to_data_uri

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{padding:8px 28px;background:#e8edf3;font-size:13px}nav a{margin-right:14px;color:#1d3557}
main{padding:8px 28px 40px;max-width:1100px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:18px;margin:0 0 10px;color:#1d3557}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #dde3ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
pre{background:#f4f6f8;padding:8px;font-size:12px;overflow:auto;max-height:260px;white-space:pre-wrap}
.note{color:#5b6675;font-size:13px}.missing{color:#a0522d}
"""

# Marks images that failed to load, so a headless browser test can count them from the DOM.
IMAGE_CHECK = """
window.addEventListener('load', function () {
  var broken = 0;
  document.querySelectorAll('img').forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) { broken++; img.setAttribute('data-broken', '1'); }
  });
  document.body.setAttribute('data-images', document.images.length);
  document.body.setAttribute('data-broken-images', broken);
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Numbers readable at a glance: thousands separators, 3 significant decimals."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{esc(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption class='note'>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{''.join(body)}</table>"


def kv_table(data: dict[str, Any], caption: str = "") -> str:
    return table(["key", "value"], [(k, v) for k, v in data.items() if not isinstance(v, (dict, list))], caption)


def figure(png: bytes, alt: str) -> str:
    return f'<img src="{to_data_uri(png)}" alt="{esc(alt)}">'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def note(text: str) -> str:
    return f"<p class='note'>{esc(text)}</p>"


def missing(text: str) -> str:
    return f"<p class='missing'>{esc(text)}</p>"


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(section(sid, name, content) for sid, name, content in sections)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{CSS}</style><script>{IMAGE_CHECK}</script></head>"
        f"<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main></body></html>"
    )
