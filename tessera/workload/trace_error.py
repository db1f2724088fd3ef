"""TraceError, and the locator that names where in a trace file a record sits (data row and line, or line).

Every trace refusal goes through these, so messages always name the file, the row and the column.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TraceError(ValueError):
    """A trace file that cannot be used as recorded; the message names file, row, column and fix."""


@dataclass(frozen=True)
class TraceLocator:
    """Turns a 0-based record index into 'file, data row r (line l), column c' (CSV) or 'file, line l' (JSONL).

    line_numbers: for JSON Lines, the file line of every record (blank lines are skipped); None for a CSV
    file, whose record i sits on line i + 2 under its header.
    """

    path: Path
    line_numbers: np.ndarray | None = None

    @property
    def is_jsonl(self) -> bool:
        return self.line_numbers is not None

    def line(self, index: int) -> int:
        return int(self.line_numbers[index]) if self.is_jsonl else index + 2

    def at(self, index: int, column: str) -> str:
        if self.is_jsonl:
            return f"{self.path}, line {self.line(index)}, field '{column}'"
        return f"{self.path}, data row {index + 1} (line {index + 2}), column '{column}'"

    def rows(self, indices) -> str:
        """'data rows 3, 7, 9' or 'lines 3, 7, 9' for a few record indices."""
        if self.is_jsonl:
            return "lines " + ", ".join(str(self.line(i)) for i in indices)
        return "data rows " + ", ".join(str(int(i) + 1) for i in indices)
