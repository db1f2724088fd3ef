"""Progress lines while experiments run: which one, elapsed time, and an ETA from typical run times.

The ETA assumes each remaining experiment takes its typical time (catalog.py); a run past its typical time counts 0.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from tessera.experiments.reproduce.catalog import PaperExperiment, typical_s


def duration(seconds: float) -> str:
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass
class Progress:
    plan: list[PaperExperiment]
    quick: bool
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    started: float = field(default_factory=time.monotonic)

    def eta(self, index: int, elapsed_current: float) -> float:
        """Seconds left when plan[index] has run elapsed_current seconds."""
        rest = sum(typical_s(e, self.quick) for e in self.plan[index + 1:])
        return max(typical_s(self.plan[index], self.quick) - elapsed_current, 0.0) + rest

    def starting(self, index: int) -> None:
        e = self.plan[index]
        self._say(f"[{index + 1}/{len(self.plan)}] {e.name}: {e.figure}; typically {duration(typical_s(e, self.quick))}"
                  f"; elapsed {duration(time.monotonic() - self.started)}, ETA {duration(self.eta(index, 0))}")

    def running(self, index: int, elapsed: float) -> None:
        self._say(f"    ... {self.plan[index].name} running for {duration(elapsed)}; "
                  f"ETA {duration(self.eta(index, elapsed))}")

    def finished(self, index: int, status: str, seconds: float) -> None:
        self._say(f"    {self.plan[index].name}: {status} in {duration(seconds)}")

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
