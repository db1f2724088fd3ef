"""Run a shipped notebook as a researcher does: its kernel started in notebooks/, parameters set after the
cell tagged `parameters` (as papermill does); a cell that raises fails the run."""
from __future__ import annotations

import os
from dataclasses import dataclass

import nbformat
from nbclient import NotebookClient

from tessera.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass
class Executed:
    text: str  # everything printed or displayed as text
    figures: int  # PNG outputs


def execute(name: str, **parameters) -> Executed:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items())))
    # the suite's MPLBACKEND=Agg would hide the figures; the kernel gets Jupyter's inline backend, as in Jupyter
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute(env=env)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    return Executed(text, sum("image/png" in o.get("data", {}) for o in outputs))
