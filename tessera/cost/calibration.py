"""Calibration of the simulator's cost model to a machine from the runtime's measured step times.

A Calibration is what the simulator loads to model a machine it has no datasheet for (e.g. this CPU):
a measured GPUSpec, the per-layer profile (tessera/cost/profile.py, format 3) and the roofline
efficiencies of the parts the ProfiledCostModel leaves to the roofline. How they are fitted
(fit_calibration), from steps measured on the real engine, each with its BatchShape counters:

    t_step = L * ops(n) + overhead + c_seq * seqs + c_tok * n + [c_pair * pairs | prefill bytes] + c_kv * kv
             + the roofline's LM head and per-sequence Q/O bytes (at the current fit)

(n = prefill + decode tokens, seqs = decode sequences + prompts in the step (one if the table has no
prefill_seqs), pairs = prefill query-key pairs, kv = decode KV tokens read, ops(n) = the measured non-attention
ops of one layer; each roofline term (prefill attention, decode attention, LM head) takes its branch, compute or
memory, at the current fit, and is its datasheet-rate time x 1/flops_fraction or x 1/hbm_fraction, so those two
are linear coefficients too), by non-negative least squares on relative error, the branches iterated. Then
overhead_s = overhead; seq_overhead_s = c_seq (the Python engine's per-request work); the profile is
ops(n) + c_tok * n / L (engine per-token work outside the layer ops, spread over the layers); flops_fraction =
L*4*q_width / (peak * c_pair) (prefill attention's effective FLOP/s); hbm_fraction = L*2*kv_width*dtype /
(bandwidth * c_kv) (decode attention's effective bandwidth: the "calibrated attention bandwidth"). Files:
calibration.json (spec, efficiencies, fit) + layer_profile.csv.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tessera.cost.profile import LayerProfile
from tessera.cost.profiled import ProfiledCostModel
from tessera.cost.roofline import RooflineCostModel, RooflineEfficiency
from tessera.interface import BatchShape
from tessera.types import GPUSpec, ModelSpec

STEP_COLUMNS = ("prefill_tokens", "prefill_attn_pairs", "decode_seqs", "decode_kv_tokens", "time_s")
REGRESSORS = ("overhead_s", "per_seq_s", "per_token_s", "per_prefill_pair_s", "per_decode_kv_token_s")
CALIBRATION_FILE = "calibration.json"
PROFILE_FILE = "layer_profile.csv"


@dataclass
class Calibration:
    """A machine as the simulator sees it: measured spec, layer profile, roofline efficiencies."""

    gpu: GPUSpec
    profile: LayerProfile
    efficiency: RooflineEfficiency
    fit: dict = field(default_factory=dict)  # coefficients, sources of every number, fit quality

    def slowed(self, factor: float) -> "Calibration":
        """The same machine when the process gets 1/factor of a core (a shared machine): every time x factor
        (profile and overhead scaled, the spec's peak FLOP/s and bandwidth divided)."""
        gpu = replace(self.gpu, name=f"{self.gpu.name} x{factor:.2f} slower",
                      hbm_bandwidth_Bps=self.gpu.hbm_bandwidth_Bps / factor,
                      peak_bf16_flops=self.gpu.peak_bf16_flops / factor)
        profile = LayerProfile(self.profile.num_tokens, tuple(t * factor for t in self.profile.time_s),
                               self.profile.source)
        efficiency = replace(self.efficiency, overhead_s=min(0.999, self.efficiency.overhead_s * factor),
                             seq_overhead_s=min(0.0999, self.efficiency.seq_overhead_s * factor))
        return Calibration(gpu, profile, efficiency, {**self.fit, "slowed_by": factor})

    def cost_model(self, model: ModelSpec) -> ProfiledCostModel:
        return ProfiledCostModel(model, self.gpu, 1, profile=self.profile, efficiency=self.efficiency)

    def cost_params(self) -> dict:
        """make_cost_model('profiled', model, self.gpu, **params) keyword params (RunSpec.cost_params)."""
        return {"profile": self.profile, **asdict(self.efficiency)}

    def save(self, folder: Path, profile_table: pd.DataFrame) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        profile_table.to_csv(folder / PROFILE_FILE, index=False, float_format="%.6g")
        doc = {"gpu": asdict(self.gpu), "efficiency": asdict(self.efficiency), "profile": PROFILE_FILE,
               "fit": self.fit}
        (folder / CALIBRATION_FILE).write_text(json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "Calibration":
        folder = Path(folder)
        doc = json.loads((folder / CALIBRATION_FILE).read_text())
        profile = LayerProfile.from_table(folder / doc["profile"])
        return cls(GPUSpec(**doc["gpu"]), profile, RooflineEfficiency(**doc["efficiency"]), doc.get("fit", {}))


def step_shape(row) -> BatchShape:
    return BatchShape(prefill_tokens=int(row.prefill_tokens), prefill_attn_pairs=float(row.prefill_attn_pairs),
                      decode_seqs=int(row.decode_seqs), decode_kv_tokens=float(row.decode_kv_tokens),
                      prefill_seqs=int(getattr(row, "prefill_seqs", 0)))


def nonneg_lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """min ||X b - y|| subject to b >= 0, by trying every support (fine for a handful of columns)."""
    best, best_err = np.zeros(X.shape[1]), float(np.sum(y**2))
    for r in range(1, X.shape[1] + 1):
        for cols in itertools.combinations(range(X.shape[1]), r):
            b, *_ = np.linalg.lstsq(X[:, cols], y, rcond=None)
            if (b < 0).any():
                continue
            err = float(np.sum((X[:, cols] @ b - y) ** 2))
            if err < best_err:
                best, best_err = np.zeros(X.shape[1]), err
                best[list(cols)] = b
    return best


def fit_calibration(steps: pd.DataFrame, ops: pd.DataFrame, model: ModelSpec, gpu: GPUSpec,
                    sources: dict | None = None, time_col: str = "time_s") -> tuple[Calibration, pd.DataFrame]:
    """Fit from measured steps (STEP_COLUMNS; the step time in `time_col`) and the layer-op profile
    (num_tokens, time_ms of one layer). Returns the Calibration and its profile table (format 3 plus the
    two parts: measured ops and the engine's per-token share).

    Every roofline term is its datasheet-rate time over an efficiency, so with a = 1 / flops_fraction and
    h = 1 / hbm_fraction the step time is linear in (overhead, c_seq, c_tok, a, h) once each max() branch
    (compute or memory: prefill attention, decode attention, LM head) is known: the branches are iterated, the
    coefficients solved together. Once the branches and coefficients settle (at most 12 rounds; the reweighting can
    keep them moving slightly), the returned Calibration prices every step as the last solve did; its own error on
    the steps (fit["step_relative_error"]) is measured with the Calibration itself. (An earlier fit held the LM head
    and per-sequence bytes at the previous round's bandwidth while solving the decode-attention one; on a real CPU
    profile it returned calibrations whose median step error was -27% to -47%.) A rate faster than the spec's peak
    (a or h < 1) raises the spec's peak to it, so every efficiency stays a fraction in (0, 1].
    """
    missing = set(STEP_COLUMNS) - set(steps.columns)
    if missing:
        raise ValueError(f"step table lacks columns {sorted(missing)}; needs {list(STEP_COLUMNS)}")
    L = model.num_layers
    ops_s = LayerProfile.from_table(ops[["num_tokens", "time_ms"]]).interpolator()
    unit = RooflineCostModel(model, gpu, 1, RooflineEfficiency(1.0, 1.0, 0.0))
    pf = steps["prefill_tokens"].to_numpy(float)
    ds = steps["decode_seqs"].to_numpy(float)
    pairs = steps["prefill_attn_pairs"].to_numpy(float)
    kv = steps["decode_kv_tokens"].to_numpy(float)
    n = pf + ds
    # per-sequence CPU and LM-head tokens: every sequence of a step, prompts too (tables without prefill_seqs: one
    # prompt per step with prompt tokens), as the cost model counts them
    seqs = np.array([step_shape(r).num_seqs for r in steps.itertuples()], dtype=float)
    t = steps[time_col].to_numpy(float)
    layers = L * np.array([ops_s(x) for x in n])
    # (compute, memory) unit times of each max() the roofline takes: prefill attention, decode attention, LM head
    terms = [(pairs * unit._pf_flop_s, pf * unit._pf_token_s),
             (np.where(ds > 0, kv * unit._dec_flop_s, 0.0), np.where(ds > 0, kv * unit._dec_kv_s + ds * unit._dec_seq_s, 0.0)),
             (seqs * unit._lm_flop_s, unit._lm_weight_s + seqs * unit._lm_token_s)]
    w = 1.0 / t  # relative error (reweighted by the prediction each round)
    a = h = 1.0
    for _ in range(12):
        branch = [ca * a >= cm * h for ca, cm in terms]  # compute-bound where the compute time is the larger
        A = sum(np.where(b, ca, 0.0) for b, (ca, _) in zip(branch, terms))
        H = sum(np.where(b, 0.0, cm) for b, (_, cm) in zip(branch, terms))
        X = np.column_stack([np.ones_like(n), seqs, n, A, H])
        coef = nonneg_lstsq(X * w[:, None], (t - layers) * w)
        overhead, c_seq, c_tok, a_new, h_new = (float(c) for c in coef)
        # a term the data cannot see (coefficient 0) is priced at 1000x the datasheet rate: negligible, finite
        a_new, h_new = max(a_new, 1e-3), max(h_new, 1e-3)
        same = all(np.array_equal(ca * a_new >= cm * h_new, b) for b, (ca, cm) in zip(branch, terms))
        if same and np.isclose(a_new, a, rtol=1e-9) and np.isclose(h_new, h, rtol=1e-9):
            break
        a, h = a_new, h_new
        # relative error against the prediction, not the measurement (1/t alone biases the fit low), clamped so a
        # badly predicted step cannot take over the next round
        w = 1.0 / np.clip(layers + X @ coef, 0.5 * t, 2.0 * t)
    a, h = a_new, h_new
    spec = gpu
    if a < 1.0 or h < 1.0:  # faster than the measured peak (caches): the spec's peak becomes the fitted rate
        spec = replace(gpu, peak_bf16_flops=gpu.peak_bf16_flops / min(a, 1.0),
                       hbm_bandwidth_Bps=gpu.hbm_bandwidth_Bps / min(h, 1.0))
    ff, hf = min(1.0, 1.0 / a), min(1.0, 1.0 / h)
    efficiency = RooflineEfficiency(ff, hf, min(overhead, 0.999), min(c_seq, 0.0999))
    table = ops[["num_tokens", "time_ms"]].rename(columns={"time_ms": "ops_ms"}).copy()
    table["engine_per_token_ms"] = c_tok * table["num_tokens"] / L * 1e3
    table["time_ms"] = table["ops_ms"] + table["engine_per_token_ms"]
    for col, field_ in (("n_embd", "hidden_size"), ("n_head", "num_heads"), ("n_kv_head", "num_kv_heads"),
                        ("n_expanded_embd", "intermediate_size")):
        table[col] = getattr(model, field_)
    profile = LayerProfile.from_table(table, model=model)
    fit = {"coefficients": dict(zip(REGRESSORS, (overhead, c_seq, c_tok, a * unit._pf_flop_s, h * unit._dec_kv_s))),
           "effective_prefill_attention_flops": gpu.peak_bf16_flops / a,
           "effective_decode_attention_Bps": gpu.hbm_bandwidth_Bps / h,
           "clamped": {"flops_fraction": bool(a < 1.0), "hbm_fraction": bool(h < 1.0)},
           "spec_peak_raised": spec is not gpu,
           "num_steps": int(len(steps)), "time_column": time_col, "sources": sources or {}}
    calib = Calibration(spec, profile, efficiency, fit)
    rel = predict_steps(calib, model, steps) / t - 1.0
    fit["step_relative_error"] = {"mean_abs": float(np.mean(np.abs(rel))), "median": float(np.median(rel)),
                                  "p10": float(np.quantile(rel, 0.1)), "p90": float(np.quantile(rel, 0.9))}
    return calib, table


def predict_steps(calib: Calibration, model: ModelSpec, steps: pd.DataFrame) -> np.ndarray:
    """The calibrated cost model's time of each measured step (seconds)."""
    cost = calib.cost_model(model)
    return np.array([cost.iteration_time(step_shape(r)) for r in steps.itertuples()])
