"""PNG plots of a run: the training curve (per epoch) and the CMC curves of an evaluation."""

from __future__ import annotations

import io
from collections.abc import Sequence


def training_curve(history: Sequence[dict]) -> bytes:
    """PNG bytes: losses (left) and batch accuracies (right) per epoch (matplotlib's Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [h["epoch"] for h in history]
    for ax, prefix, title in ((fig.add_subplot(1, 2, 1), "loss", "losses"), (fig.add_subplot(1, 2, 2), "acc", "")):
        for key in sorted({k for h in history for k in h if k.startswith(prefix)}):
            ax.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(title or "training accuracy (batch)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _png(fig)


def cmc_plot(result: dict, max_rank: int = 20) -> bytes:
    """CMC curves of every protocol (refined ones dashed) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for kind, style in (("protocols", "-"), ("refined", "--")):
        for name, m in result.get(kind, {}).items():
            cmc = m["cmc"][:max_rank]
            label = name if kind == "protocols" else f"{name} + refine"
            ax.plot(range(1, len(cmc) + 1), [100 * v for v in cmc], style, label=label)
    ax.set(xlabel="rank", ylabel="matching rate (%)", title=f"CMC: {result['dataset']}", ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def metric_by_epoch(curves: dict[str, list[list[dict]]], protocol: str, key: str) -> bytes:
    """PNG bytes: `protocol`'s `key` (e.g. CC rank-1) against epochs, one line per run with its mean over seeds
    and a ±1 std band; `curves[run][seed]` is that seed's list of {"epoch", protocol: {key: value}}."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, seeds in curves.items():
        epochs = [point["epoch"] for point in seeds[0]]
        values = np.array([[point[protocol][key] for point in seed] for seed in seeds])
        mean, std = values.mean(axis=0), values.std(axis=0)
        ax.plot(epochs, mean, marker="o", ms=3, label=f"{name} (n={len(seeds)} seeds)")
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    label = f"{'CC' if protocol == 'cc' else protocol} {'rank-1' if key == 'rank1' else key}"
    ax.set(xlabel="epoch", ylabel=f"{label} (%)", title=f"{label} by epoch (test split: plotted, never used to select)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
