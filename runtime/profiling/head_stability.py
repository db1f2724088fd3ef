"""Head-stability profiling of a runtime checkpoint: FlexiCache's offline pass (flexicache.md §1.1-1.2).

Teacher-forces windows of held-out text, in the checkpoint's own tokens (windows.py: bytes for the byte
model, tokenizer.json's BPE otherwise), through the model (record.py), keeps every decode step's top-K
pages per (layer, KV head) by attention mass (and by MinMax, to compare), computes RCO / TS per head
(tessera/kvcache/stability.py) and writes the 25% least stable heads as head_stability.tsv, the file
the simulator and the runtime read (tessera/kvcache/head_lists.py). Outputs in --out:

    traces/sample_XX_{attention,minmax}.npz   top-K traces (tessera/kvcache/traces.py format; not with
                                               --no-traces)
    head_stability.tsv                         unstable (layer, kv_head) pairs, data/flexicache format
    head_stability.csv                         per-head table (TS, RCO by distance, mass captured, ...)
    head_stability.json                        settings and summary (recall@M, split, agreement)
    head_stability.png                         per-head TS distribution and RCO vs step distance

Run (about 2.5 s per sample on one core for the shipped model at 2048 + 256 tokens):
    nice -n 15 python -m tessera.runtime.profiling.head_stability --model models/tessera-tiny-byte \
        --out outputs/head_stability --context 2048 --steps 256 --k 8 --samples 8
SmolLM2-135M-Instruct (30 x 3 KV heads; 35-90 s per sample at 2048 + 256 tokens on the shared cores)
is profiled the same way; data/smollm2-head-stability/SOURCE.md has the command.
"""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tessera.kvcache.head_lists import HEAD_STABILITY_FILE, save_unstable_heads
from tessera.kvcache.stability import chunk_instability, profile_unstable_heads, rco
from tessera.kvcache.traces import TopKTrace


@dataclass
class ProfileSettings:
    context: int = 2048  # prompt tokens (the tokenizer's BOS, if any, + held-out text) before the first decode step
    steps: int = 256  # decode steps recorded per sample
    k: int = 8  # top-K pages (16 tokens each)
    samples: int = 8  # held-out windows
    window: int = 16  # TS window W (paper: 16)
    fraction: float = 0.25  # unstable share (paper: bottom quartile)
    seed: int = 0


def rco_by_distance(trace: TopKTrace, window: int = 16) -> np.ndarray:
    """Mean RCO(s, s + d) over the non-overlapping chunk starts s, for d = 1..window-1: [window-1, L, H]."""
    k, steps = trace.k, trace.topk.shape[0]
    starts = [s for s in range(0, steps - window + 1, window) if trace.num_pages[s] > k]
    return np.stack([np.mean([rco(trace.topk[s], trace.topk[s + d], k, int(trace.num_pages[s + d]))
                              for s in starts], axis=0) for d in range(1, window)])


def sample_windows(settings: ProfileSettings, heldout) -> list[list[int]]:
    """Deterministic windows of context + steps tokens of the held-out text (windows.HeldoutTokens)."""
    rng = np.random.default_rng(settings.seed)
    return [heldout.window(rng, settings.context + settings.steps) for _ in range(settings.samples)]


def record_samples(model, windows: list[list[int]], settings: ProfileSettings, out: Path | None, log=None):
    """Record every window; saves its two traces under out/traces (unless out is None); returns the
    RecordedSteps."""
    import time

    from tessera.runtime.profiling.record import record_topk

    if out is not None:
        (out / "traces").mkdir(parents=True, exist_ok=True)
    recorded = []
    for i, tokens in enumerate(windows):
        start = time.perf_counter()
        rec = record_topk(model, tokens, settings.context, settings.k)
        if out is not None:
            rec.attention.save(out / "traces" / f"sample_{i:02d}_attention.npz")
            rec.minmax.save(out / "traces" / f"sample_{i:02d}_minmax.npz")
        recorded.append(rec)
        if log:
            log(f"sample {i + 1}/{len(windows)}: {time.perf_counter() - start:.1f}s, "
                f"NLL {rec.nll_bits:.2f} bits/token")
    return recorded


def head_table(recorded, settings: ProfileSettings) -> tuple[pd.DataFrame, dict]:
    """Per-head table and run summary from the recorded samples."""
    attn = [r.attention for r in recorded]
    mm = [r.minmax for r in recorded]
    prof = profile_unstable_heads(attn, settings.fraction, settings.window, settings.k, settings.seed)
    prof_mm = profile_unstable_heads(mm, settings.fraction, settings.window, settings.k, settings.seed)
    chunks = np.concatenate([chunk_instability(t, settings.window) for t in attn])  # [C, L, H]
    ts_chunks = 1.0 - chunks
    curve = np.mean([rco_by_distance(t, settings.window) for t in attn], axis=0)  # [W-1, L, H]
    captured = np.concatenate([r.mass_captured for r in recorded]).mean(0)  # [L, H, 2]
    L, H = prof.mean_ts.shape
    unstable = np.zeros((L, H), dtype=bool)
    unstable[tuple(np.array(prof.unstable_heads).T)] = True
    unstable_mm = np.zeros((L, H), dtype=bool)
    unstable_mm[tuple(np.array(prof_mm.unstable_heads).T)] = True
    layer, head = np.indices((L, H)).reshape(2, -1)
    table = pd.DataFrame({
        "layer": layer, "kv_head": head,
        "ts_mean": prof.mean_ts.ravel(), "ts_std": ts_chunks.std(0).ravel(),
        "ts_p10": np.quantile(ts_chunks, 0.1, axis=0).ravel(), "ts_p90": np.quantile(ts_chunks, 0.9, axis=0).ravel(),
        "rco_d1": curve[0].ravel(), "rco_d15": curve[-1].ravel(),
        "unstable_frequency": prof.frequency.ravel(), "unstable": unstable.ravel(),
        "ts_mean_minmax": prof_mm.mean_ts.ravel(), "unstable_minmax": unstable_mm.ravel(),
        "mass_in_topk_attention": captured[..., 0].ravel(), "mass_in_topk_minmax": captured[..., 1].ravel(),
    })
    summary = {
        "settings": asdict(settings), "heads": int(L * H), "unstable_heads": [list(p) for p in prof.unstable_heads],
        "num_chunks": prof.num_chunks, "recall_at_m": prof.recall, "random_recall": prof.random_recall,
        "unstable_heads_minmax": [list(p) for p in prof_mm.unstable_heads],
        "attention_minmax_set_overlap": float((unstable & unstable_mm).sum() / max(1, unstable.sum())),
        "per_sample_set_overlap": per_sample_overlap(attn, settings),
        "split": split_stats(table),
        "nll_bits_per_token": float(np.mean([r.nll_bits for r in recorded])),
        "rco_by_distance": curve.reshape(len(curve), -1).tolist(),
    }
    return table, summary


def k_sensitivity(traces: list[TopKTrace], settings: ProfileSettings, ks: list[int], main: list) -> dict:
    """The unstable list at smaller K from the same traces (sets are best first, so top-k' = first k')."""
    out = {}
    for k in ks:
        if not 0 < k < settings.k:
            raise ValueError(f"--also-k {k}: must be between 1 and --k - 1 = {settings.k - 1}")
        prof = profile_unstable_heads(traces, settings.fraction, settings.window, k, settings.seed)
        same = len(set(prof.unstable_heads) & set(map(tuple, main)))
        out[str(k)] = {"unstable_heads": [list(p) for p in prof.unstable_heads], "recall_at_m": prof.recall,
                       "overlap_with_main_list": same / max(1, len(main)),
                       "ts_mean": prof.mean_ts.ravel().round(4).tolist()}
    return out


def per_sample_overlap(traces: list[TopKTrace], settings: ProfileSettings) -> float:
    """Mean pairwise |A & B| / M of each sample's bottom-quartile set (the paper's cross-task overlap)."""
    sets = []
    for t in traces:
        ts = 1.0 - chunk_instability(t, settings.window).mean(0).ravel()
        m = int(round(settings.fraction * ts.size))
        sets.append(set(np.argsort(ts, kind="stable")[:m].tolist()))
    m = len(sets[0]) or 1
    pairs = [len(a & b) / m for i, a in enumerate(sets) for b in sets[i + 1:]]
    return float(np.mean(pairs)) if pairs else float("nan")


def split_stats(table: pd.DataFrame) -> dict:
    """Is there a stable/unstable split? The TS gap at the cut versus the typical gap between heads."""
    ts = np.sort(table["ts_mean"].to_numpy())
    unstable_ts = table.loc[table["unstable"], "ts_mean"]
    stable_ts = table.loc[~table["unstable"], "ts_mean"]
    gaps = np.diff(ts)
    cut_gap = float(stable_ts.min() - unstable_ts.max()) if len(unstable_ts) and len(stable_ts) else float("nan")
    return {"ts_min": float(ts[0]), "ts_median": float(np.median(ts)), "ts_max": float(ts[-1]),
            "unstable_ts_max": float(unstable_ts.max()) if len(unstable_ts) else float("nan"),
            "stable_ts_min": float(stable_ts.min()) if len(stable_ts) else float("nan"),
            "gap_at_cut": cut_gap, "median_gap": float(np.median(gaps)) if len(gaps) else float("nan"),
            "largest_gap": float(gaps.max()) if len(gaps) else float("nan")}


def stability_figure(table: pd.DataFrame, summary: dict, path: Path, title: str) -> None:
    """Left: per-head mean TS (sorted, p10-p90 bars), attention vs MinMax; right: RCO vs step distance."""
    import matplotlib.pyplot as plt

    from matplotlib.lines import Line2D

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4))
    order = table.sort_values("ts_mean").reset_index(drop=True)
    x = np.arange(len(order))
    colors = np.where(order["unstable"], "tab:red", "tab:blue")
    ax.errorbar(x, order["ts_mean"], yerr=[order["ts_mean"] - order["ts_p10"], order["ts_p90"] - order["ts_mean"]],
                fmt="none", ecolor="0.6", lw=1)
    ax.scatter(x, order["ts_mean"], c=colors, s=30 if len(x) <= 32 else 14, zorder=3)
    ax.scatter(x, order["ts_mean_minmax"], marker="x", c="k", s=25 if len(x) <= 32 else 10, zorder=3)
    if len(x) <= 32:
        ax.set_xticks(x, [f"{l}.{h}" for l, h in zip(order["layer"], order["kv_head"])], rotation=90, fontsize=9)
        ax.set_xlabel("head (layer.kv_head), sorted by mean TS")
    else:  # too many heads to name: rank on the axis, names in head_stability.csv
        ax.set_xlabel(f"{len(x)} heads, sorted by mean TS (names in head_stability.csv)")
    ax.set_ylabel(f"TS (mean RCO over the next {summary['settings']['window'] - 1} steps)")
    ax.set_ylim(0, 1)
    ax.set_title("per-head stability", fontsize=10)
    handles = [Line2D([], [], marker="o", ls="", color="tab:red", label="unstable head (attention mass)"),
               Line2D([], [], marker="o", ls="", color="tab:blue", label="stable head (attention mass)"),
               Line2D([], [], marker="x", ls="", color="k", label="same head, MinMax bound"),
               Line2D([], [], color="0.6", label="p10-p90 over windows")]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    curve = np.array(summary["rco_by_distance"])  # [W-1, L*H]
    d = np.arange(1, len(curve) + 1)
    for j, row in table.iterrows():
        bx.plot(d, curve[:, j], color="tab:red" if row["unstable"] else "tab:blue", alpha=0.7, lw=1)
    bx.set_xlabel("step distance d")
    bx.set_ylabel("RCO(s, s + d)")
    bx.set_ylim(0, 1)
    bx.set_title("overlap of a head's top-K pages d steps apart", fontsize=10)
    bx.legend(handles=handles[:2], fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def profile(model_dir: Path, out: Path, settings: ProfileSettings, also_k: tuple[int, ...] = (),
            save_traces: bool = True, log=None) -> tuple[pd.DataFrame, dict]:
    """The whole pass: record, analyse, write every output file; returns the table and summary."""
    import torch

    from tessera.runtime.checkpoint import load_checkpoint
    from tessera.runtime.profiling.windows import heldout_tokens

    model = load_checkpoint(model_dir)
    if settings.context + settings.steps > model.config.max_position_embeddings:
        raise ValueError(f"--context + --steps = {settings.context + settings.steps} exceeds the model's "
                         f"max_position_embeddings {model.config.max_position_embeddings}")
    if -(-settings.context // 16) <= settings.k:
        raise ValueError(f"--context {settings.context} gives {-(-settings.context // 16)} pages; RCO needs more "
                         f"than K = {settings.k}")
    out.mkdir(parents=True, exist_ok=True)
    heldout = heldout_tokens(model_dir, model.config.bos_token_id or 0)
    windows = sample_windows(settings, heldout)
    torch.manual_seed(settings.seed)
    recorded = record_samples(model, windows, settings, out if save_traces else None, log)
    table, summary = head_table(recorded, settings)
    if also_k:
        summary["other_k"] = k_sensitivity([r.attention for r in recorded], settings, list(also_k),
                                           summary["unstable_heads"])
    summary["model"] = str(model_dir)
    summary["tokens"] = {"tokenizer": "bytes (no tokenizer files)" if heldout.tokenizer is None
                         else type(heldout.tokenizer).__name__, "prefix": heldout.prefix,
                         "heldout_tokens": int(len(heldout.ids))}
    summary["model_shape"] = {"layers": model.config.num_hidden_layers, "kv_heads": model.config.num_key_value_heads,
                              "query_heads": model.config.num_attention_heads}
    save_unstable_heads(out / HEAD_STABILITY_FILE, summary["unstable_heads"])
    table.to_csv(out / "head_stability.csv", index=False, float_format="%.4f")
    (out / "head_stability.json").write_text(json.dumps(summary, indent=2) + "\n")
    title = (f"{model_dir.name}: head stability over {settings.samples} held-out windows, context "
             f"{settings.context}, {settings.steps} steps, K={settings.k} pages")
    stability_figure(table, summary, out / "head_stability.png", title)
    return table, summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="checkpoint folder (config.json + safetensors)")
    p.add_argument("--out", type=Path, required=True)
    defaults = ProfileSettings()
    for name in ("context", "steps", "k", "samples", "window", "seed"):
        p.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    p.add_argument("--fraction", type=float, default=defaults.fraction)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    p.add_argument("--also-k", type=int, nargs="*", default=[],
                   help="also derive the unstable list at these smaller K from the same traces (K sensitivity)")
    p.add_argument("--no-traces", action="store_true", help="do not write traces/ (24 MB for SmolLM2)")
    p.add_argument("--write-to-checkpoint", action="store_true",
                   help=f"also copy {HEAD_STABILITY_FILE} into the model folder (where the sim and runtime look)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    settings = ProfileSettings(**{k: getattr(args, k) for k in asdict(defaults)})
    table, summary = profile(args.model, args.out, settings, tuple(args.also_k), not args.no_traces,
                             log=lambda msg: print(msg, flush=True))
    cols = ["layer", "kv_head", "ts_mean", "ts_p10", "ts_p90", "rco_d1", "rco_d15", "unstable_frequency",
            "unstable", "ts_mean_minmax", "unstable_minmax", "mass_in_topk_attention", "mass_in_topk_minmax"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    s = summary["split"]
    print(f"unstable (25% least stable): {summary['unstable_heads']}; recall@M on held-out chunks "
          f"{summary['recall_at_m']:.2f} vs random {summary['random_recall']:.2f} ({summary['num_chunks']} chunks); "
          f"per-sample set overlap {summary['per_sample_set_overlap']:.2f}; MinMax list agrees on "
          f"{summary['attention_minmax_set_overlap']:.0%}")
    print(f"TS range {s['ts_min']:.2f}..{s['ts_max']:.2f}, gap at the cut {s['gap_at_cut']:.3f} "
          f"(median gap between neighbours {s['median_gap']:.3f}); model NLL {summary['nll_bits_per_token']:.2f} "
          f"bits/token")
    for k, other in summary.get("other_k", {}).items():
        print(f"K={k}: recall@M {other['recall_at_m']:.2f}, {other['overlap_with_main_list']:.0%} of the list "
              f"shared with K={settings.k}")
    if args.write_to_checkpoint:
        shutil.copyfile(args.out / HEAD_STABILITY_FILE, args.model / HEAD_STABILITY_FILE)
        print(f"wrote {args.model / HEAD_STABILITY_FILE}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
