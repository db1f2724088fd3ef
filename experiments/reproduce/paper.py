"""The papers' headline numbers the report compares with, each with its source.

The FlexiCache throughput and online numbers are the experiments' own PAPER_* constants (one source of truth).
"""
from __future__ import annotations

from tessera.experiments.reproduce.claims import PaperClaim

FLEXICACHE = "docs/papers/flexicache.md"
MOSAIC = "docs/papers/mosaic.md §6"
ONLINE_SOURCE = f"{FLEXICACHE} §5.4, Fig. 6"

MEMORY_AT_20K = PaperClaim("at_least", 70.0, unit="%", text=">70% at >= 20k tokens (K = 1,024)",
                           source=f"{FLEXICACHE} §5.5, Fig. 10")
MEMORY_ASYMPTOTE = PaperClaim("value", 75.0, unit="%", text="asymptote 75% (stable heads' share)",
                              source=f"{FLEXICACHE} §5.5, Fig. 10")
RERANK_AT_40 = PaperClaim("value", 2.44, text="2.44x at batch 40", source=f"{FLEXICACHE} §5.5, Fig. 9")
MOSAIC_E2E = PaperClaim("band", 1.7, 2.3, text="1.7-2.3x (range across settings)", source=MOSAIC)
MOSAIC_EXPERT = PaperClaim("at_most", 2.5, text="up to 2.5x", source=MOSAIC)
MOSAIC_AGGREGATOR = PaperClaim("at_most", 4.23, text="up to 4.23x", source=MOSAIC)
SENSITIVITY = ("accuracy retention only (0.9932 at 25% unstable / R = 16 down to 0.9628 at 6.25% / R = 32; "
               f"{FLEXICACHE} §5.2, Table 6): not simulated, so not comparable")


def throughput_band(model: str) -> PaperClaim | None:
    """The paper's FlexiCache (K = 1,024) / vLLM output-throughput band for the model (Fig. 5)."""
    from tessera.experiments.flexicache.throughput import PAPER_RATIO
    if model not in PAPER_RATIO:
        return None
    low, high = (float(v) for v in PAPER_RATIO[model].rstrip("x").split("-"))
    return PaperClaim("band", low, high, text=f"{PAPER_RATIO[model]} (over output lengths 50-1,500)",
                      source=f"{FLEXICACHE} §5.3, Fig. 5")


def online_tpot_ms() -> dict[tuple[str, float], float]:
    """The paper's mean TPOT (ms) per (arm label, rate) for Llama-3.1-8B (Fig. 6)."""
    from tessera.experiments.flexicache.online import PAPER_TPOT_MS
    return dict(PAPER_TPOT_MS)
