"""PNG charts with matplotlib (`pip install "inferline[eval]"`): a confusion-matrix heat map, and quality
against speed for `inferline compare`."""

from __future__ import annotations


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError('Charts need matplotlib: pip install "inferline[eval]"') from error
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(path: str, labels: list[str], matrix: list[list[int]], title: str) -> None:
    """A heat map: true labels down, predicted labels across, each cell's count written in it."""
    plt = _pyplot()
    size = max(6.0, 0.6 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size * 0.8), dpi=100)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, label="rows")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def quality_speed_png(path: str, points: list[tuple[str, float, float]], metric: str, title: str) -> None:
    """One numbered dot per model, named in the legend below: `metric` up, items per second across."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5 + 0.25 * len(points)), dpi=100)
    markers = "osD^vP*Xh<>"
    for i, (name, speed, quality) in enumerate(points, 1):
        ax.scatter([speed], [quality], s=90, marker=markers[(i - 1) % len(markers)], label=f"{i}. {name}")
        ax.annotate(str(i), (speed, quality), textcoords="offset points", xytext=(7, 7))
    ax.set_xlabel("throughput (items/s, higher is faster)")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
