"""The paper-figure experiments `tessera-reproduce` runs, in order, with their typical run times.

Typical times (2-core shared VM, docs/experiments.md) only feed the progress ETA; the report shows measured times.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperExperiment:
    name: str  # the `experiment=` option
    figure: str  # what of which paper it reproduces
    typical_full_s: float
    typical_quick_s: float
    note: str = ""  # what differs from the paper's setting, shown under its results


EXPERIMENTS = (
    PaperExperiment("flexicache_memory", "FlexiCache Fig. 10 (GPU KV memory vs sequence length)", 1.5, 1.5,
                    "Analytic steady state, checked against the page state machine."),
    PaperExperiment("flexicache_rerank_cost", "FlexiCache Fig. 9 (stability-aware vs all-heads reranking)", 1.5, 1.5,
                    "Bytes through the cost model's HBM roofline plus kernel launches, not a measured kernel."),
    PaperExperiment("mosaic", "MOSAIC abstract (end-to-end and per-stage speedups over the sequential baseline)",
                    115, 3.5,
                    "Only the abstract's numbers are known (docs/papers/mosaic.md §6): the 1.7-2.3x band is a range "
                    "across the paper's settings, compared here with each dataset."),
    PaperExperiment("flexicache_sensitivity", "FlexiCache Table 6 (unstable fraction x rerank interval R)", 26, 1.5,
                    "The paper's Table 6 reports accuracy retention only; the simulator reports PCIe traffic, reload "
                    "stalls and throughput for the same grid, so nothing here is comparable with the paper's values."),
    PaperExperiment("flexicache_throughput", "FlexiCache Fig. 5 (offline throughput vs output length)", 62, 1.5,
                    "Prompts uniform in 10k-30k tokens (no L-Eval); roofline costs."),
    PaperExperiment("flexicache_online", "FlexiCache Fig. 6 (TTFT/TPOT under Poisson arrivals)", 104, 1.5,
                    "Prompts uniform in 10k-30k tokens (no L-Eval); roofline costs."),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}


def typical_s(experiment: PaperExperiment, quick: bool) -> float:
    return experiment.typical_quick_s if quick else experiment.typical_full_s
