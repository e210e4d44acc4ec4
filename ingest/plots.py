"""Figures 4-6 of the paper as PNG files, from an evaluation result (matplotlib, Agg canvas)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["evaluation_plots"]


def evaluation_plots(ev, run_dir: Path) -> list[str]:
    """Figures 4-6 as PNG files (matplotlib's Agg canvas; no global backend is touched)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []

    def save(fig: Figure, name: str) -> None:
        FigureCanvasAgg(fig)
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=110)
        written.append(name)

    if ev.optimality is not None and ev.optimality.cells:
        cells = ev.optimality.cells
        layers = list(dict.fromkeys(c.layer for c in cells))
        taus = sorted({c.tau for c in cells})
        fig = Figure(figsize=(max(5.0, 1.6 * len(layers) + 2), 4.2))
        ax = fig.add_subplot(111)
        ax2 = ax.twinx()
        width = 0.8 / len(taus)
        blues = ["#9ecae1", "#4292c6", "#08519c", "#08306b"]
        pinks = ["#fcc5c0", "#f768a1", "#ae017e", "#49006a"]
        for j, tau in enumerate(taus):
            xs, ys, lo, hi, fr = [], [], [], [], []
            for i, layer in enumerate(layers):
                c = next((c for c in cells if c.layer == layer and c.tau == tau), None)
                if c is None:
                    continue
                xs.append(i + (j - (len(taus) - 1) / 2) * width)
                ys.append(c.mean_diff)
                lo.append(c.mean_diff - c.ci_low if np.isfinite(c.ci_low) else 0.0)
                hi.append(c.ci_high - c.mean_diff if np.isfinite(c.ci_high) else 0.0)
                fr.append(c.frac_random_better)
            ax.bar(xs, ys, width * 0.9, yerr=[lo, hi], capsize=3, color=blues[j % 4], label=f"mean diff, tau={tau}")
            ax2.bar(xs, fr, width * 0.45, color=pinks[j % 4], alpha=0.9, label=f"random better, tau={tau}")
        ax.set_xticks(range(len(layers)), layers)
        ax.set_ylabel("L(random) - L(core), 99% CI")
        ax2.set_ylabel("fraction of random sets with smaller loss")
        ax2.set_ylim(0, 1)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"Optimality (Fig. 4): {ev.model_name} / {ev.class_name}")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
        save(fig, "optimality.png")

    if ev.fidelity is not None and ev.fidelity.cells:
        cells = ev.fidelity.cells
        layers = list(dict.fromkeys(c.layer for c in cells))
        taus = sorted({c.tau for c in cells})
        fig = Figure(figsize=(10, 7))
        for r, op in enumerate(("mask", "retain")):
            for s, scope in enumerate(("single", "multi")):
                ax = fig.add_subplot(2, 2, 2 * r + s + 1)
                for j, tau in enumerate(taus):
                    pts = [(layers.index(c.layer), c) for c in cells if c.tau == tau and c.scope == scope]
                    pts.sort(key=lambda p: p[0])
                    if not pts:
                        continue
                    x = [p[0] for p in pts]
                    ax.plot(x, [getattr(c, f"{op}_core") for _, c in pts], "-o", color=f"C{j}", label=f"core, tau={tau}")
                    ax.plot(x, [getattr(c, f"{op}_random") for _, c in pts], "--s", color=f"C{j}", alpha=0.6, label=f"random, tau={tau}")
                ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize=8)
                ax.set_ylim(-0.05, 1.05)
                ax.set_title(f"{'masking' if op == 'mask' else 'retaining'}, {'single layer' if scope == 'single' else 'classifier down to layer'}", fontsize=9)
                ax.set_ylabel("accuracy / unmasked")
                ax.legend(fontsize=6)
        fig.suptitle(f"Fidelity (Fig. 5): {ev.model_name} / {ev.class_name}")
        save(fig, "fidelity.png")

    if ev.correlation is not None and ev.correlation.cells:
        cells = ev.correlation.cells
        fig = Figure(figsize=(10, 4))
        for i, name in enumerate(("pearson", "spearman")):
            ax = fig.add_subplot(1, 2, i + 1)
            for j, layer in enumerate(dict.fromkeys(c.layer for c in cells)):
                row = [c for c in cells if c.layer == layer]
                ax.plot([c.cardinality for c in row], [getattr(c, name) for c in row], "-", color=f"C{j}", label=layer)
            ax.set_xlabel("cardinality of the combination")
            ax.set_ylabel(f"{name} correlation")
            ax.set_ylim(-1.05, 1.05)
            ax.axhline(0, color="black", lw=0.6)
            ax.legend(fontsize=7)
        fig.suptitle(f"Correlation of |IG| with knock-out loss (Fig. 6): {ev.model_name} / {ev.class_name}")
        save(fig, "correlation.png")
    return written
