"""Experiment `capacity_search`: the highest Poisson arrival rate at which a config meets TTFT and TPOT SLOs at a
percentile, by bisection on log(rate) with seeded probes; writes probes.csv, capacity.png and summary.json."""
from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from tessera.experiments.backends.sim import run_sim
from tessera.experiments.config import ConfigError
from tessera.experiments.resolve import resolve
from tessera.experiments.run_record import simulated_cluster_record
from tessera.results import add_latency_columns, empty_frame, save_run
from tessera.workload import build_workload
from tessera.workload.arrivals import MAX_RATE, MIN_RATE
from tessera.workload.checks import whole_number
from tessera.workload.context_limit import DEFAULT_POLICY, apply_context_limit


@dataclass(frozen=True)
class SLO:
    ttft_s: float
    tpot_s: float
    percentile: float

    def check(self) -> None:
        for key, ok, allowed in (("slo_ttft_s", self.ttft_s > 0, "seconds > 0"),
                                 ("slo_tpot_s", self.tpot_s > 0, "seconds > 0"),
                                 ("percentile", 0 < self.percentile <= 100, "a percentile in (0, 100]")):
            if not ok:
                raise ConfigError(f"params.{key}={getattr(self, key.removeprefix('slo_'))!r} is invalid: use {allowed}")


def _real(p: dict, key: str, allowed: str, ok) -> float:
    """params.<key> as a finite number that passes ok, else a ConfigError naming it and what is allowed."""
    value = p.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"params.{key}={value!r} is invalid: use {allowed}")
    return float(value)


def settings(cfg: DictConfig) -> tuple[SLO, dict]:
    p = OmegaConf.to_container(cfg.params, resolve=True)
    slo = SLO(_real(p, "slo_ttft_s", "seconds > 0", lambda v: v > 0),
              _real(p, "slo_tpot_s", "seconds > 0", lambda v: v > 0),
              _real(p, "percentile", "a percentile in (0, 100]", lambda v: 0 < v <= 100))
    slo.check()
    lo = _real(p, "rate_lo", f"requests/s in [{MIN_RATE:g}, {MAX_RATE:g}]", lambda v: MIN_RATE <= v <= MAX_RATE)
    _real(p, "rate_hi", f"requests/s in ({lo:g}, {MAX_RATE:g}] (above rate_lo)", lambda v: lo < v <= MAX_RATE)
    _real(p, "tolerance", "a relative width > 0, e.g. 0.05", lambda v: v > 0)
    try:
        p["num_requests"] = whole_number("params.num_requests", p.get("num_requests"))  # 1e3 is 1,000 requests
    except ValueError:
        raise ConfigError(f"params.num_requests={p.get('num_requests')!r} is invalid: use a whole request count "
                          ">= 1") from None
    _real(p, "warmup_fraction", "a fraction in [0, 1), e.g. 0.1", lambda v: 0 <= v < 1)
    if p.get("max_queue_growth") is not None:
        _real(p, "max_queue_growth", "a share of the arrival rate in (0, 1), e.g. 0.05, or null to judge probes by "
              "their SLO percentiles alone", lambda v: 0 < v < 1)
    return slo, p


def describe(cfg: DictConfig) -> dict:
    spec = resolve(cfg)
    slo, p = settings(cfg)
    if "arrival" not in spec.workload:
        raise ConfigError(f"experiment=capacity_search sets the arrival rate of a synthetic workload; workload "
                          f"{spec.workload.get('name', spec.workload.get('kind'))} has none: use e.g. "
                          "workload=sharegpt_poisson")
    return {"model": spec.model.name, **simulated_cluster_record(cfg, spec), "lengths": spec.workload.get("lengths"),
            "context_limit": spec.workload.get("context_limit", DEFAULT_POLICY), "seed": cfg.seed, "slo": asdict(slo),
            "search": {k: p[k] for k in ("num_requests", "rate_lo", "rate_hi", "tolerance", "warmup_fraction",
                                         "max_queue_growth")}}


def queue_growth(whole: pd.DataFrame, measured: pd.DataFrame, rate: float) -> float:
    """How fast requests pile up in the engine, as a fraction of the arrival rate: the number in the system
    (arrived, not finished) seen by each measured arrival, its median over the last third of them minus that
    over the first third, per second between the two, over `rate`. About 0 while the engine keeps up; it is the
    unserved share of the load (1 - throughput / rate) when it does not. An overloaded vLLM-style engine first
    admits the excess into ever larger batches, so its TTFT stays low until KV memory runs out: a short probe
    shows the growth here long before its percentiles do."""
    third = len(measured) // 3
    if third == 0:
        return 0.0
    arrivals = np.sort(whole["arrival_s"].to_numpy(float))
    finishes = np.sort(whole["finish_s"].fillna(math.inf).to_numpy(float))
    t = measured["arrival_s"].to_numpy(float)
    in_system = np.searchsorted(arrivals, t, side="right") - np.searchsorted(finishes, t, side="right")
    first, last = slice(0, third), slice(len(t) - third, len(t))
    span = float(np.median(t[last]) - np.median(t[first]))
    if span <= 0:
        return 0.0
    return float(np.median(in_system[last]) - np.median(in_system[first])) / span / rate


def probe(spec, workload: dict, rate: float, slo: SLO, warmup_fraction: float = 0.0,
          max_queue_growth: float | None = None) -> dict:
    """One simulation at `rate`: the SLO percentiles, the fraction of requests meeting both SLOs, throughput,
    measured over the requests after the first `warmup_fraction` of arrivals (those meet an empty engine, which
    makes a short probe of an overloaded config look better than its steady state). With `max_queue_growth`, a
    probe whose requests pile up faster than that share of the arrival rate (queue_growth) is overloaded: a longer
    run would break the SLO, however short the probe."""
    workload = {**workload, "arrival": {"kind": "poisson", "rate": rate}}
    policy = workload.pop("context_limit", DEFAULT_POLICY)
    requests, _ = apply_context_limit(build_workload(workload), spec.model.max_position, policy)
    whole = add_latency_columns(run_sim(spec, requests).requests).sort_values(["arrival_s", "request_id"])
    frame = whole.iloc[int(warmup_fraction * len(whole)):]
    done = frame[frame["status"] == "finished"]
    ttft = float(np.percentile(done["ttft_s"], slo.percentile)) if len(done) else math.inf
    tpot = done["tpot_s"].dropna()
    tpot_p = float(np.percentile(tpot, slo.percentile)) if len(tpot) else 0.0
    ok = (done["ttft_s"] <= slo.ttft_s) & ~(done["tpot_s"] > slo.tpot_s)
    span = float(done["finish_s"].max() - frame["arrival_s"].min()) if len(done) else math.nan
    growth = queue_growth(whole, frame, rate)
    stable = max_queue_growth is None or growth <= max_queue_growth
    return {"rate": rate, "ttft_p_s": ttft, "tpot_p_s": tpot_p, "attainment": float(ok.sum()) / len(frame),
            "throughput_per_s": len(done) / span if span > 0 else 0.0, "measured": len(frame), "finished": len(done),
            "queue_growth": growth, "stable": bool(stable),
            "meets": bool(len(done) == len(frame) and ttft <= slo.ttft_s and tpot_p <= slo.tpot_s and stable)}


def search(measure, lo: float, hi: float, tolerance: float) -> tuple[float, list[dict]]:
    """Bisection on log(rate) for the highest rate whose probe meets the SLO (assumed monotone in the rate)."""
    probes = [measure(lo)]
    if not probes[-1]["meets"]:
        return 0.0, probes
    probes.append(measure(hi))
    if probes[-1]["meets"]:
        return hi, probes
    while hi / lo - 1 > tolerance:
        mid = math.sqrt(lo * hi)
        probes.append(measure(mid))
        lo, hi = (mid, hi) if probes[-1]["meets"] else (lo, mid)
    return lo, probes


def figure(probes: pd.DataFrame, capacity: float, slo: SLO, path: Path, title: str) -> None:
    """Left: throughput vs offered rate (log-log); right: SLO attainment vs throughput, the capacity probe marked."""
    from matplotlib.figure import Figure

    probes = probes.sort_values("rate")
    fig = Figure(figsize=(11, 3.8))
    left, right = fig.subplots(1, 2)
    left.plot(probes["rate"], probes["throughput_per_s"], "o-", label="throughput")
    left.plot(probes["rate"], probes["rate"], ":", color="grey", label="offered load")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("arrival rate (req/s)")
    left.set_ylabel("finished requests / s")
    # attainment: the share of requests meeting both SLOs; a rate meets when its p-th percentiles of TTFT and of
    # TPOT each meet theirs, which no attainment level marks, so the probes that meet are drawn filled
    right.plot(probes["throughput_per_s"], probes["attainment"], "-", color="C0")
    meets = probes["meets"].astype(bool)
    right.plot(probes.loc[meets, "throughput_per_s"], probes.loc[meets, "attainment"], "o", color="C0",
               label="meets (every criterion in the title)")
    right.plot(probes.loc[~meets, "throughput_per_s"], probes.loc[~meets, "attainment"], "o", mfc="none",
               color="C0", label="does not meet")
    right.set_xlabel("throughput (req/s)")
    right.set_ylabel("requests meeting both SLOs")
    if capacity > 0:
        left.axvline(capacity, color="C3", ls="--", label=f"capacity {capacity:.2f} req/s")
        at = probes.loc[probes["rate"] == capacity].iloc[0]
        right.plot([at["throughput_per_s"]], [at["attainment"]], "*", color="C3", ms=14,
                   label=f"at capacity: {at['throughput_per_s']:.2f} req/s")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lines = textwrap.wrap(title, 130)  # the search's settings make a long title: wrapped, not cut at the edges
    fig.suptitle("\n".join(lines), fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9 - 0.05 * len(lines), wspace=0.25)
    fig.savefig(path, dpi=120)


def cluster_label(spec) -> str:
    """The GPUs a search ran on (workers x tp x pp), their layout when a worker has several, and the KV policy."""
    gpus = sum(w.tp * w.pp for w in spec.workers)
    worker = spec.workers[0]
    layout = f"{len(spec.workers)} worker(s) of TP {worker.tp} x PP {worker.pp}, " if gpus > len(spec.workers) else ""
    kv = spec.kv.name if spec.kv is not None else "full KV"
    return f"{gpus} x {spec.gpu.name} ({layout}{kv})"


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    spec = resolve(cfg)
    slo, p = settings(cfg)
    workload = {**spec.workload, "num_requests": int(p["num_requests"])}
    limit = None if p.get("max_queue_growth") is None else float(p["max_queue_growth"])
    capacity, probes = search(lambda rate: probe(spec, workload, rate, slo, float(p["warmup_fraction"]), limit),
                              float(p["rate_lo"]), float(p["rate_hi"]), float(p["tolerance"]))
    table = pd.DataFrame(probes)
    table.to_csv(run_dir / "probes.csv", index=False)
    title = (f"capacity of {spec.model.name} on {cluster_label(spec)}: {capacity:.2f} req/s "
             f"(p{slo.percentile:g} TTFT <= {slo.ttft_s:g} s and TPOT <= {slo.tpot_s:g} s, "
             f"{p['num_requests']} requests per probe, first {p['warmup_fraction']:.0%} not measured"
             + (f", queue growth <= {limit:.0%} of the rate" if limit is not None else "") + ")")
    if cfg.output.figures:
        figure(table, capacity, slo, run_dir / "capacity.png", title)
    if cfg.output.print_table:
        print(title)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    summary = {"capacity_rate_per_s": capacity, "slo": asdict(slo), "num_probes": len(probes),
               "bracket": [float(table.loc[table["meets"], "rate"].max()) if table["meets"].any() else 0.0,
                           float(table.loc[~table["meets"], "rate"].min()) if (~table["meets"]).any() else math.inf]}
    save_run(run_dir, empty_frame(), summary, None, metadata)
    return summary
