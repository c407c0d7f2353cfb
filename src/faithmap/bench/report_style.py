"""The inline stylesheet and script of the benchmark report page.

Both are constants written into the page itself, so the report needs no network and no file
beside it. The script only reorders table rows when a column header is clicked; it never reads
or writes markup, so no name from the data can reach it unescaped.
"""

from __future__ import annotations

__all__ = ["SCRIPT", "STYLE"]

STYLE = """
:root {
  --ink: #1f2933; --muted: #52606d; --faint: #9aa5b1; --line: #e4e7eb; --paper: #f5f7fa;
  --card: #ffffff; --accent: #3b5bdb; --best: #d3f9d8; --best-ink: #1b5e20;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--paper); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
header.hero {
  background: linear-gradient(120deg, #1e2a78 0%, #3b5bdb 60%, #4dabf7 100%);
  color: #fff; padding: 28px 40px 0;
}
header.hero .brand {
  font-size: 12px; letter-spacing: .14em; text-transform: uppercase; opacity: .8;
}
header.hero h1 { margin: 4px 0 6px; font-size: 28px; font-weight: 650; }
header.hero h1 code {
  font-size: 22px; background: rgba(255,255,255,.15); padding: 1px 8px; border-radius: 6px;
}
header.hero .facts { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 18px; }
header.hero .fact {
  background: rgba(255,255,255,.14); border-radius: 8px; padding: 6px 12px; font-size: 13px;
}
header.hero .fact b { font-size: 17px; margin-right: 4px; }
nav { display: flex; gap: 2px; flex-wrap: wrap; }
nav a {
  color: #fff; text-decoration: none; padding: 8px 14px; border-radius: 8px 8px 0 0;
  font-size: 14px; opacity: .85;
}
nav a:hover { background: var(--paper); color: var(--ink); opacity: 1; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 40px 40px; }
section {
  background: var(--card); border-radius: 12px; margin: 24px 0; padding: 22px 26px;
  box-shadow: 0 1px 2px rgba(31,41,51,.06), 0 4px 16px rgba(31,41,51,.05);
}
h2 { margin: 0 0 4px; font-size: 20px; }
h3 { margin: 22px 0 8px; font-size: 16px; color: var(--muted); }
p.note { margin: 0 0 16px; color: var(--muted); font-size: 13.5px; max-width: 900px; }
.scroll { overflow-x: auto; }
.scroll.tall { max-height: 560px; overflow-y: auto; }
.scroll.tall thead th { position: sticky; top: 0; background: var(--card); z-index: 1; }
table.leaderboard td:first-child, table.leaderboard th:first-child {
  position: sticky; left: 0; background: var(--card); z-index: 1;
}
table.leaderboard tbody tr:hover td:first-child { background: #f0f4ff; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 7px 10px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, th.text, td.text { text-align: left; }
thead th {
  color: var(--muted); font-weight: 600; font-size: 12.5px; border-bottom: 2px solid var(--line);
}
thead tr.group th { border-bottom: 1px solid var(--line); text-align: center; color: var(--ink); }
th.sortable { cursor: pointer; user-select: none; }
th.sortable:hover { color: var(--accent); }
th.sortable:hover::after { content: " \\21C5"; color: var(--faint); font-size: 11px; }
th.sorted-asc::after { content: " \\2191"; color: var(--accent); }
th.sorted-desc::after { content: " \\2193"; color: var(--accent); }
tbody tr { border-bottom: 1px solid var(--line); }
tbody tr:hover { background: #f0f4ff; }
td.method { font-weight: 600; }
td.method .swatch {
  display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 8px;
}
td .ci { color: var(--faint); font-size: 12px; margin-left: 3px; }
td .rank {
  display: inline-block; min-width: 20px; margin-left: 8px; padding: 0 5px; border-radius: 9px;
  background: var(--line); color: var(--muted); font-size: 11px; text-align: center;
}
td.best { background: var(--best); color: var(--best-ink); font-weight: 650; }
td.best .rank { background: var(--best-ink); color: #fff; }
td.best .ci { color: #2e7d32; }
td.missing { color: var(--faint); }
td.meanrank { color: var(--muted); }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; display: block; border-radius: 6px; }
.keys { display: flex; align-items: center; gap: 8px; font-size: 12.5px; color: var(--muted); }
.keys .key { display: inline-block; width: 90px; height: 10px; border-radius: 3px; }
.keys .sep { width: 18px; }
.keys .mask {
  display: inline-block; width: 16px; height: 10px; border: 2px solid #00e676; border-radius: 3px;
}
.grids {
  display: flex; flex-wrap: wrap; gap: 8px 32px; align-items: flex-start; margin-top: 20px;
}
.grids > div { flex: 1 1 520px; max-width: 100%; }
.grids > div.wide { flex-basis: 100%; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
pre {
  background: #0f172a; color: #e2e8f0; padding: 16px 18px; border-radius: 8px; overflow-x: auto;
  font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
.columns { display: grid; grid-template-columns: 2fr 1fr; gap: 24px; align-items: start; }
ul.exports { padding-left: 18px; margin: 6px 0; }
ul.exports a { color: var(--accent); }
footer { text-align: center; color: var(--faint); font-size: 12px; padding: 0 0 30px; }
@media (max-width: 900px) {
  main, header.hero { padding-left: 14px; padding-right: 14px; }
  .columns { grid-template-columns: 1fr; }
}
"""

SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th[data-col]");
  heads.forEach(function (head) {
    head.addEventListener("click", function () {
      var col = Number(head.dataset.col);
      var asc = head.classList.contains("sorted-desc") ||
        (!head.classList.contains("sorted-asc") && head.dataset.first === "asc");
      heads.forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
      head.classList.add(asc ? "sorted-asc" : "sorted-desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var text = head.dataset.kind === "text";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
        if (text) { return asc ? x.localeCompare(y) : y.localeCompare(x); }
        var nx = x === "" ? NaN : Number(x), ny = y === "" ? NaN : Number(y);
        if (isNaN(nx) || isNaN(ny)) { return Number(isNaN(nx)) - Number(isNaN(ny)); }
        return asc ? nx - ny : ny - nx;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
