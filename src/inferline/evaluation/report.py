"""Plain-text tables of eval and compare reports (what the commands print)."""

from __future__ import annotations


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def table(headers: list[str], rows: list[list]) -> str:
    """A left-aligned first column and right-aligned figures, under a rule."""
    cells = [[str(h) for h in headers]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def eval_text(report: dict) -> str:
    """The eval summary: the scalar metrics, then per-class figures when there are any."""
    metrics = report["metrics"]
    head = (f"{report['task']} · {report['model']} · {report['n']} rows"
            + (f" ({report['errors']} failed)" if report.get("errors") else "")
            + f" · {report['items_per_second']:.1f} items/s")
    scalars = [[name, value] for name, value in metrics.items() if isinstance(value, (int, float))]
    parts = [head, "", table(["metric", "value"], scalars)]
    per_class = metrics.get("per_class")
    if per_class:
        rows = [[label, v["precision"], v["recall"], v["f1"], v["support"]] for label, v in per_class.items()]
        parts += ["", table(["class", "precision", "recall", "f1", "support"], rows)]
    return "\n".join(parts)
