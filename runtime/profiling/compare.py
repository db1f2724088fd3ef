"""Do two head-stability profiles of one model agree (e.g. two independent sets of held-out windows)?

Compares head_stability.csv files: overlap of the unstable lists (|A & B| / M, the paper's measure), the
rank correlation of the per-head mean TS, and the unstable heads each list has alone.

    python -m tessera.runtime.profiling.compare data/smollm2-head-stability \
        data/smollm2-head-stability/replicate_seed1 --out data/smollm2-head-stability/replicate_seed1/comparison.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def compare_profiles(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """a, b: head_stability.csv tables of the same model."""
    keys = ["layer", "kv_head"]
    merged = a.merge(b, on=keys, suffixes=("_a", "_b"))
    if len(merged) != len(a) or len(a) != len(b):
        raise ValueError(f"the profiles cover different heads ({len(a)} vs {len(b)}, {len(merged)} shared)")
    set_a = set(map(tuple, a.loc[a["unstable"], keys].to_numpy().tolist()))
    set_b = set(map(tuple, b.loc[b["unstable"], keys].to_numpy().tolist()))
    m = max(len(set_a), 1)
    return {
        "heads": len(a), "unstable_a": len(set_a), "unstable_b": len(set_b),
        "list_overlap": len(set_a & set_b) / m,
        "ts_spearman": float(merged["ts_mean_a"].rank().corr(merged["ts_mean_b"].rank())),
        "ts_mean_abs_diff": float((merged["ts_mean_a"] - merged["ts_mean_b"]).abs().mean()),
        "only_a": sorted(map(list, set_a - set_b)), "only_b": sorted(map(list, set_b - set_a)),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path, help="profile folder (head_stability.csv)")
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, help="also write the comparison as JSON here")
    args = p.parse_args(argv)
    result = compare_profiles(pd.read_csv(args.a / "head_stability.csv"), pd.read_csv(args.b / "head_stability.csv"))
    result = {"a": str(args.a), "b": str(args.b), **result}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
