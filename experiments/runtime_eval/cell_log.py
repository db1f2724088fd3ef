"""The finished cells of a runtime_accuracy run, one JSON line each, written as soon as each cell ends.

A run stopped part-way keeps what it measured; the same command in the same folder skips those cells.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tessera.experiments.config import ConfigError

CELL_LOG = "cells.jsonl"


class CellLog:
    """Rows keyed by (task, context, policy, budget, KV overrides); the first line fingerprints the params,
    so a folder holding another configuration's cells is refused instead of mixed in."""

    def __init__(self, path: Path, params: dict, fresh: bool = False) -> None:
        self.path = path
        self.fingerprint = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
        self.rows: dict[tuple, dict] = {}
        if path.exists() and path.stat().st_size and not fresh:
            lines = path.read_text().splitlines()
            head = json.loads(lines[0])
            if head.get("params_sha1") != self.fingerprint:
                raise ConfigError(f"{path} holds cells of other params (sha1 {head.get('params_sha1')}, these "
                                 f"{self.fingerprint}): use another hydra.run.dir or delete the file")
            for line in lines[1:]:
                if line.strip():  # a line cut by a crash is not valid JSON: that cell runs again
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    row = entry["row"]
                    key = self._key(row["task"], row["context_len"], row["policy"], row["budget"],
                                    entry["overrides"])
                    self.rows[key] = row
        else:
            path.write_text(json.dumps({"params_sha1": self.fingerprint}) + "\n")

    @staticmethod
    def _key(task: str, context: int, policy: str, budget: int, overrides: dict) -> tuple:
        return task, int(context), policy, int(budget), tuple(sorted((overrides or {}).items()))

    def get(self, task: str, context: int, policy: str, budget: int, overrides: dict) -> dict | None:
        return self.rows.get(self._key(task, context, policy, budget, overrides))

    def add(self, row: dict, overrides: dict | None) -> None:
        key = self._key(row["task"], row["context_len"], row["policy"], row["budget"], overrides)
        self.rows[key] = dict(row)
        with self.path.open("a") as f:
            f.write(json.dumps({"row": row, "overrides": overrides or {}}, default=float) + "\n")
