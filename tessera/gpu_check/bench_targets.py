"""The bench phase's goals, as report lines (never failures), from benchmarks/kernels.py's rows:
dense paged decode (bf16, 32k context, batch 16, GQA 4:1, head_dim 128) >= 70% of peak HBM bandwidth;
sparse over K = 64 pages >= 5x faster than dense at 32k; copy_blocks >= 80% of the link's measured bandwidth.
"""
from __future__ import annotations

DENSE_OF_PEAK_GOAL = 0.70
SPARSE_SPEEDUP_GOAL = 5.0
COPY_OF_LINK_GOAL = 0.80
TARGET_CONTEXT, TARGET_BATCH = 32768, 16


def targets(rows: list[dict], link: dict | None, measured_copy_GBps: float | None = None) -> list[dict]:
    """Keyword arguments for Recorder.target, one per goal (value None when the case did not run)."""
    row = next((r for r in rows if (r["context"], r["batch"]) == (TARGET_CONTEXT, TARGET_BATCH)), None)
    case = f"bf16, context {TARGET_CONTEXT}, batch {TARGET_BATCH}"
    out = [{"name": f"dense paged decode, fraction of peak HBM bandwidth ({case})",
            "value": None if row is None else 100 * row["dense_of_peak"], "goal": 100 * DENSE_OF_PEAK_GOAL, "unit": "%",
            "detail": "" if row is None else f"{row['dense_GBps']:.0f} GB/s, {row['dense_s'] * 1e3:.3f} ms"},
           {"name": f"sparse (K={row['k_pages'] if row else 64} pages) speed-up over dense ({case})",
            "value": None if row is None else row["dense_over_sparse"], "goal": SPARSE_SPEEDUP_GOAL, "unit": "x",
            "detail": "" if row is None else f"sparse {row['sparse_s'] * 1e3:.3f} ms"},
           {"name": f"dense paged decode vs SDPA on gathered K/V ({case})",
            "value": None if row is None else row["sdpa_s"] / row["dense_s"], "unit": "x (SDPA time / Triton time)"}]
    if measured_copy_GBps and row is not None:
        out.append({"name": f"dense paged decode, fraction of a measured device-to-device copy ({case})",
                    "value": 100 * row["dense_GBps"] / measured_copy_GBps, "unit": "%",
                    "detail": f"copy {measured_copy_GBps:.0f} GB/s"})
    for way in ("h2d", "d2h"):
        value = None if link is None else 100 * link[f"copy_blocks_{way}_GBps"] / link[f"link_{way}_GBps"]
        detail = "" if link is None else (f"copy_blocks {link[f'copy_blocks_{way}_GBps']:.1f} GB/s, pinned copy "
                                          f"{link[f'link_{way}_GBps']:.1f} GB/s")
        out.append({"name": f"copy_blocks {way.upper()}, fraction of the link (pinned copy of the same bytes)",
                    "value": value, "goal": 100 * COPY_OF_LINK_GOAL, "unit": "%", "detail": detail})
    return out
