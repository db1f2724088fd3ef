"""Per-layer time of the non-attention operators as a function of batch tokens, from a profile table.

A LayerProfile is what ProfiledCostModel interpolates. It loads Vidur's shipped mlp.csv tables or a
generic table measured by Tessera's runtime. Accepted table formats (CSV, parquet or a DataFrame;
times are milliseconds for ONE decoder layer on ONE GPU at the table's TP degree):

1. Vidur: `num_tokens`, `time_stats.<op>.median` for the ops in LAYER_OPS (others ignored), and
   optionally `num_tensor_parallel_workers` and the shape columns n_embd, n_head, ...
2. Long, one row per (op, token count): `op`, `num_tokens`, `time_ms`; ops are summed after each
   is interpolated onto the union of the token counts.
3. Two columns: `num_tokens`, `time_ms` (already summed over the layer's ops).
Formats 2 and 3 may carry a `tp` column; rows of other TP degrees are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import pandas as pd

from tessera.cost.interp import PiecewiseLinear
from tessera.types import ModelSpec

# The per-layer ops Vidur adds up for one decoder block (vidur/entities/execution_time.py); the
# embedding ("emb") is left out as Vidur does, attention kernels are not in mlp.csv at all.
LAYER_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
             "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
_VIDUR_TP = "num_tensor_parallel_workers"
# Vidur shape columns -> ModelSpec fields, checked so a profile is not applied to another shape.
_SHAPE_COLUMNS = {"n_embd": "hidden_size", "n_head": "num_heads", "n_kv_head": "num_kv_heads",
                  "n_expanded_embd": "intermediate_size"}


@dataclass(frozen=True)
class LayerProfile:
    """Seconds of one layer's non-attention ops at each profiled token count (one GPU, one TP)."""

    num_tokens: tuple[int, ...]
    time_s: tuple[float, ...]
    source: str = ""

    def __post_init__(self):
        if len(self.num_tokens) != len(self.time_s) or not self.num_tokens:
            raise ValueError(f"LayerProfile needs equal, non-empty num_tokens and time_s "
                             f"(got {len(self.num_tokens)} and {len(self.time_s)})")
        if min(self.num_tokens) < 1 or min(self.time_s) < 0:
            raise ValueError(f"LayerProfile from {self.source or 'table'}: num_tokens must be >= 1 "
                             f"and times >= 0")

    def interpolator(self) -> PiecewiseLinear:
        return PiecewiseLinear(zip(self.num_tokens, self.time_s))

    @classmethod
    def from_table(cls, table: pd.DataFrame | str | PathLike, tp: int = 1,
                   model: ModelSpec | None = None) -> LayerProfile:
        """Load any of the formats in the module docstring; `model` checks Vidur's shape columns."""
        source = "" if isinstance(table, pd.DataFrame) else str(table)
        df = _read(table)
        if "num_tokens" not in df.columns:
            raise ValueError(f"profile table {source or '(DataFrame)'} has no num_tokens column; "
                             f"columns: {list(df.columns)[:12]}")
        for tp_col in (_VIDUR_TP, "tp"):
            if tp_col in df.columns:
                measured = sorted(int(v) for v in df[tp_col].unique())
                df = df[df[tp_col] == tp]
                if df.empty:
                    raise ValueError(f"profile table {source or '(DataFrame)'} has no rows for tp={tp}; "
                                     f"profiled TP degrees: {measured}")
        if model is not None:
            _check_shape(df, model, source)
        median_cols = [f"time_stats.{op}.median" for op in LAYER_OPS]
        if all(c in df.columns for c in median_cols):
            ms = df[median_cols].sum(axis=1)
            return cls._from_points(df["num_tokens"], ms, source)
        if {"op", "time_ms"} <= set(df.columns):
            return cls._from_long(df, source)
        if "time_ms" in df.columns:
            return cls._from_points(df["num_tokens"], df["time_ms"], source)
        raise ValueError(f"profile table {source or '(DataFrame)'}: expected Vidur "
                         f"time_stats.<op>.median columns, (op, num_tokens, time_ms) or "
                         f"(num_tokens, time_ms); got columns {list(df.columns)[:12]}")

    @classmethod
    def _from_points(cls, tokens, ms, source: str) -> LayerProfile:
        tokens = list(tokens)
        if min(tokens) < 1:
            raise ValueError(f"LayerProfile from {source or 'table'}: num_tokens must be >= 1")
        curve = PiecewiseLinear(zip(tokens, ms))  # averages duplicate token counts
        return cls(tuple(int(x) for x in curve.xs), tuple(y * 1e-3 for y in curve.ys), source)

    @classmethod
    def _from_long(cls, df: pd.DataFrame, source: str) -> LayerProfile:
        per_op = [PiecewiseLinear(zip(g["num_tokens"], g["time_ms"])) for _, g in df.groupby("op")]
        grid = sorted({x for curve in per_op for x in curve.xs})
        ms = [sum(curve(x) for curve in per_op) for x in grid]
        return cls._from_points(grid, ms, source)


def _read(table) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    path = str(table)
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def _check_shape(df: pd.DataFrame, model: ModelSpec, source: str) -> None:
    for col, field in _SHAPE_COLUMNS.items():
        if col in df.columns:
            profiled = int(df[col].iloc[0])
            if profiled != getattr(model, field):
                raise ValueError(f"profile {source or '(DataFrame)'} was measured with {col}={profiled} "
                                 f"but {model.name} has {field}={getattr(model, field)}")
