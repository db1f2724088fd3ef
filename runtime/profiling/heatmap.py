"""Layer x KV-head maps of a profile folder: TS and step-to-step RCO (head_stability.csv) and retrieval mass
(retrieval.csv, when present), unstable heads outlined, and TS against retrieval mass per head.

    python -m tessera.runtime.profiling.heatmap --dir data/smollm2-head-stability   # -> head_heatmap.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def grid(table: pd.DataFrame, column: str) -> np.ndarray:
    """[kv_heads, layers] array of a per-head column (layers along x: 30 x 3 reads better wide)."""
    L, H = table["layer"].max() + 1, table["kv_head"].max() + 1
    out = np.full((H, L), np.nan)
    out[table["kv_head"], table["layer"]] = table[column]
    return out


def heatmap_figure(stability: pd.DataFrame, retrieval: pd.DataFrame | None, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    panels = [("ts_mean", "mean TS (RCO over the next 15 steps)", "viridis", (0, 1)),
              ("rco_d1", "RCO between consecutive steps", "viridis", (0, 1))]
    if retrieval is not None:
        panels.append(("needle_mass", "retrieval: mass on the needle while answering (group mean)", "Purples", None))
    L = int(stability["layer"].max()) + 1
    fig = plt.figure(figsize=(14, 1.6 * len(panels) + 1.6))
    gs = fig.add_gridspec(len(panels), 2, width_ratios=[3.2, 1])
    unstable = stability.loc[stability["unstable"], ["layer", "kv_head"]].to_numpy()
    for i, (column, label, cmap, limits) in enumerate(panels):
        ax = fig.add_subplot(gs[i, 0])
        source = retrieval if column == "needle_mass" else stability
        values = grid(source, column)
        im = ax.imshow(values, cmap=cmap, aspect="auto", vmin=limits[0] if limits else 0,
                       vmax=limits[1] if limits else np.nanmax(values))
        for layer, head in unstable:
            ax.add_patch(Rectangle((layer - 0.5, head - 0.5), 1, 1, fill=False, ec="red", lw=1.8))
        ax.set_yticks(range(values.shape[0]))
        ax.set_ylabel("KV head")
        ax.set_xticks(range(L))
        ax.tick_params(labelsize=8)
        ax.set_title(label + ("; red box = unstable head" if i == 0 else ""), fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    ax.set_xlabel("layer")
    sx = fig.add_subplot(gs[:, 1])
    if retrieval is not None:
        merged = stability.merge(retrieval[["layer", "kv_head", "needle_mass"]], on=["layer", "kv_head"])
        colors = np.where(merged["unstable"], "tab:red", "tab:blue")
        sx.scatter(merged["ts_mean"], merged["needle_mass"], c=colors, s=18)
        for _, row in merged.nlargest(5, "needle_mass").iterrows():
            sx.annotate(f"{row['layer']}.{row['kv_head']}", (row["ts_mean"], row["needle_mass"]), fontsize=8,
                        xytext=(3, 2), textcoords="offset points")
        sx.set_xlabel("mean TS")
        sx.set_ylabel("needle mass while answering")
        sx.set_title("per head (red = unstable)", fontsize=9)
    else:
        layer_ts = stability.groupby("layer")["ts_mean"].mean()
        sx.plot(layer_ts.index, layer_ts.to_numpy(), marker="o")
        sx.set_xlabel("layer")
        sx.set_ylabel("mean TS over the layer's KV heads")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="folder with head_stability.csv (+ retrieval.csv)")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    stability = pd.read_csv(args.dir / "head_stability.csv")
    retrieval = pd.read_csv(args.dir / "retrieval.csv") if (args.dir / "retrieval.csv").exists() else None
    title = args.title or f"{args.dir.name}: per-head stability{' and retrieval mass' if retrieval is not None else ''}"
    heatmap_figure(stability, retrieval, args.dir / "head_heatmap.png", title)
    print(f"wrote {args.dir / 'head_heatmap.png'}")


if __name__ == "__main__":
    main()
