"""Rendering a display grid (a DataFrame of cell texts) as Markdown, LaTeX or HTML.

Text columns are left-aligned and numeric ones right-aligned in every form; a column counts as numeric
when every non-blank cell reads as numbers (``0.706 ± 0.012``, ``1,234``, or NOT_DEFINED).
"""

from __future__ import annotations

import html

import pandas as pd

NOT_DEFINED = "n/a"
"""The cell text of a value undefined for every seed (an SRCC of constant predictions)."""

CSS = ("body{font-family:Helvetica,Arial,sans-serif;font-size:14px;margin:12px}"
       "table.results{border-collapse:collapse}"
       "table.results th,table.results td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}"
       "table.results .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
       "table.results thead th{border-bottom:2px solid #333}"
       "p.note{color:#555;font-size:12px;max-width:60em}")


def html_grid(df: pd.DataFrame) -> str:
    """An HTML table: text columns left-aligned, numeric columns right-aligned, everything escaped."""
    numeric = [i > 0 and numeric_column(df.iloc[:, i]) for i in range(df.shape[1])]

    def cell(tag, value, num):
        attr = ' class="num"' if num else ""
        return f"<{tag}{attr}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", c, num) for c, num in zip(df.columns, numeric))
    rows = "".join("<tr>" + "".join(cell("td", v, num) for v, num in zip(r, numeric)) + "</tr>"
                   for r in df.itertuples(index=False))
    return f"<table class='results'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def numeric_column(col: pd.Series) -> bool:
    return all(_looks_numeric(v) for v in col if str(v) != "")


def _looks_numeric(value) -> bool:
    if str(value) == NOT_DEFINED:
        return True
    text = str(value).replace("±", " ").replace(",", "").split()
    try:
        [float(t) for t in text]
    except ValueError:
        return False
    return bool(text)


def markdown_grid(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    rows = [[str(v).replace("|", r"\|") for v in r] for r in df.itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    numeric = [i > 0 and numeric_column(df.iloc[:, i]) for i in range(len(cols))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(cells, widths, numeric)) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(cols), rule] + [line(r) for r in rows])


TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex(value) -> str:
    """LaTeX text of a cell: special characters escaped, ±, -> and − as math."""
    text = "".join(TEX_ESCAPES.get(ch, ch) for ch in str(value))
    return text.replace("±", r"$\pm$").replace("->", r"$\rightarrow$").replace("−", "$-$")
