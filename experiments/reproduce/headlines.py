"""A headline result of one experiment run, read from the tables it wrote, and the reader per experiment.

A headline may carry the paper's claim (compared in full runs) or a note on why the paper has no comparable number.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tessera.experiments.reproduce.claims import PaperClaim, format_number


@dataclass(frozen=True)
class Headline:
    quantity: str
    result: float
    unit: str = "x"
    claim: PaperClaim | None = None
    paper_note: str = ""  # shown in the paper column when the paper has no comparable number

    def shown_result(self) -> str:
        return format_number(self.result, self.unit)


def readers() -> dict[str, Callable[[Path], list[Headline]]]:
    from tessera.experiments.reproduce import flexicache_headlines as fc
    from tessera.experiments.reproduce.mosaic_headlines import mosaic
    return {"flexicache_memory": fc.memory, "flexicache_rerank_cost": fc.rerank_cost,
            "flexicache_throughput": fc.throughput, "flexicache_online": fc.online,
            "flexicache_sensitivity": fc.sensitivity, "mosaic": mosaic}


def read_headlines(name: str, run_dir: Path) -> list[Headline]:
    """The headlines of experiment `name` from its run dir (KeyError for an experiment without a reader)."""
    return readers()[name](run_dir)
