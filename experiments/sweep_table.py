"""The table a sweep ends with: one row per run, the values it varied as columns, its headline numbers.

A Hydra callback (conf/config.yaml hydra.callbacks), so every `tessera -m ...` prints it, whichever launcher ran.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback

HEADLINE = {"capacity_rate_per_s": "capacity (req/s)", "num_finished": "finished", "request_throughput_per_s": "req/s",
            "output_token_throughput_per_s": "out tok/s", "ttft_s.mean": "TTFT mean (s)",
            "ttft_s.p99": "TTFT p99 (s)", "tpot_s.mean": "TPOT mean (s)", "tpot_s.p99": "TPOT p99 (s)"}


def sweep_table(sweep_dir: str | Path) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/summary.json")):
        data = json.loads(path.read_text())
        overrides = dict(o.lstrip("+").split("=", 1) for o in data.get("metadata", {}).get("overrides", []) if "=" in o)
        flat = _flatten(data.get("summary", {}))
        rows.append({**overrides, **{label: flat.get(key) for key, label in HEADLINE.items() if key in flat},
                     "run": path.parent.name})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    varied = [c for c in frame.columns if c not in HEADLINE.values() and c != "run" and frame[c].nunique() > 1]
    shown = varied + [c for c in HEADLINE.values() if c in frame.columns]
    return frame[shown or ["run"]].sort_values(varied, key=_numbers_as_numbers) if varied else frame[shown or ["run"]]


def _numbers_as_numbers(column: pd.Series) -> pd.Series:
    """Sort key: a column whose given override values all read as numbers sorts by value (16, 64, 256, not 16, 256,
    64; runs that did not set it last); any other column as text."""
    numeric = pd.to_numeric(column, errors="coerce")
    given = column.notna()
    return numeric if numeric[given].notna().all() else column


class SweepTable(Callback):
    def on_multirun_end(self, config, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = sweep_table(sweep_dir)
        if table.empty:
            print(f"sweep {sweep_dir}: no run finished")
            return
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format",
                               lambda v: f"{v:.4g}"):
            print(f"\nsweep {sweep_dir}: {len(table)} runs\n{table.to_string(index=False)}")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out
