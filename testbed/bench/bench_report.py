"""What the benchmark report scripts (*_report.py) do the same way: read a
script's results.jsonl, and draw one figure to SVG.

Imported by the report scripts, which run from this folder.
"""

import json
from contextlib import contextmanager


def load(path):
    """The JSON objects of a results.jsonl, one per non-empty line."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@contextmanager
def figure(path, *, xlabel, ylabel, title, height=4.5, loglog=False):
    """Yields the axes of a 7-inch-wide figure to draw on, then labels it,
    grids it, adds the legend and saves it to `path`. `loglog` puts both
    axes on log scales, base 2 across (counts that double)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, height))
    yield ax
    if loglog:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both" if loglog else "major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
