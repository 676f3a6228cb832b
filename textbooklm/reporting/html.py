"""Small HTML building blocks for the report: escaped tables, figures, examples, sections, the page shell.

Plain string building (no template engine) keeps the report dependency-free and the output easy to
diff. Every value goes through :func:`esc`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from textbooklm.reporting.plots import to_data_uri

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{padding:8px 28px;background:#e8edf3;font-size:13px;line-height:1.9}nav a{margin-right:14px;color:#1d3557}
main{padding:8px 28px 40px;max-width:1180px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:14px 18px;margin:16px 0}
section{overflow-wrap:anywhere}
h2{font-size:18px;margin:0 0 10px;color:#1d3557}h3{font-size:15px;margin:14px 0 6px}
.lead{font-size:14px;margin:0 0 8px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px;display:block;max-width:100%;overflow-x:auto}
caption{text-align:left}
th,td{border:1px solid #dde3ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;border:1px solid #eee;margin:6px 6px 6px 0;vertical-align:top}
pre{background:#f4f6f8;padding:8px;font-size:12px;overflow:auto;max-height:260px;white-space:pre-wrap;margin:4px 0}
.note{color:#5b6675;font-size:13px}.missing{color:#a0522d}
.story{font-size:15px;margin:4px 0 10px;padding-left:20px}.story li{margin:3px 0}
.story b{color:#1d3557}
.warnings{background:#fff4e5;border:1px solid #f0b357;border-radius:6px;padding:8px 14px;margin:10px 0}
.warnings h3{margin:4px 0;color:#8a4b00}.warnings li{margin:3px 0}
.ok{background:#eef7ee;border:1px solid #9cc79c;border-radius:6px;padding:8px 14px;margin:10px 0}
.moved li{margin:2px 0}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:10px;margin:6px 0 12px}
.pair>div{min-width:0}.pair h4{margin:2px 0;font-size:13px}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px}
.example{border:1px solid #dde3ea;border-radius:4px;padding:6px 8px;min-width:0}
.example .meta{font-size:12px;color:#37475a;margin-bottom:4px}
.tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;background:#e8edf3;margin-right:4px}
.tag.kept{background:#dcefdc}.tag.dropped{background:#f6dcdc}.tag.stale{background:#fbe3b8}
details summary{cursor:pointer;font-size:13px;color:#1d3557}
"""

# Marks images that failed to load, so a headless browser test can count them from the DOM.
IMAGE_CHECK = """
window.addEventListener('load', function () {
  var broken = 0;
  document.querySelectorAll('img').forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) { broken++; img.setAttribute('data-broken', '1'); }
  });
  document.body.setAttribute('data-images', document.images.length);
  var loads = performance.getEntriesByType('resource').map(function (e) { return e.name; })
    .filter(function (u) { return u.indexOf('data:') !== 0; });
  document.body.setAttribute('data-network-loads', loads.length);
  var external = 0;  // anything the page refers to outside itself (a file, a URL): the report must have none
  document.querySelectorAll('[src],[href]').forEach(function (el) {
    var u = el.getAttribute('src') || el.getAttribute('href') || '';
    if (u.indexOf('data:') !== 0 && u.charAt(0) !== '#') { external++; }
  });
  document.body.setAttribute('data-external-refs', external);
  document.body.setAttribute('data-overflow-px',
    Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth));
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


def lead(text: str) -> str:
    """A section's one summary sentence (the stage's own summary line), shown once, at its top."""
    return f"<p class='lead'>{esc(text)}</p>"


def tag(text: str, kind: str = "") -> str:
    return f"<span class='tag {esc(kind)}'>{esc(text)}</span>"


def details(summary: str, body: str) -> str:
    """Long material (a prompt, a full file) folded away, one click from where it is mentioned."""
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def example(meta: str, text: str, limit: int = 1200) -> str:
    """One record: a line of what was decided about it (already HTML), then its text, cut at ``limit``."""
    cut = text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit:,} more characters)"
    return f"<div class='example'><div class='meta'>{meta}</div>{pre(cut)}</div>"


def examples(items: list[str]) -> str:
    return f"<div class='examples'>{''.join(items)}</div>" if items else ""


def pair(left_title: str, left: str, right_title: str, right: str, meta: str = "") -> str:
    """Two texts side by side (a training sample and the benchmark problem it matched)."""
    return (f"<div class='meta note'>{meta}</div><div class='pair'><div><h4>{esc(left_title)}</h4>{pre(left)}</div>"
            f"<div><h4>{esc(right_title)}</h4>{pre(right)}</div></div>")


def bullets(items: list[str], cls: str = "") -> str:
    """A list whose items are already HTML."""
    return f"<ul class='{esc(cls)}'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def link(sid: str, text: str) -> str:
    return f'<a href="#{esc(sid)}">{esc(text)}</a>'


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: no external resource (styles inline, images as data: URIs)."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(section(sid, name, content) for sid, name, content in sections)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{CSS}</style><script>{IMAGE_CHECK}</script></head>"
        f"<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main></body></html>"
    )
