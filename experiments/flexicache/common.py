"""Shared plumbing of the FlexiCache experiments: per-model run specs, one simulation -> one table row,
tables (CSV + console) and the run files every experiment writes.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from tessera import models  # noqa: E402
from tessera.experiments.backends.sim import run_sim  # noqa: E402
from tessera.experiments.config import ConfigError  # noqa: E402
from tessera.experiments.resolve import RunSpec, resolve  # noqa: E402
from tessera.results import empty_frame, save_run, summarize  # noqa: E402
from tessera.sim.kv_setup import SIM_KEYS, KVSetup  # noqa: E402
from tessera.types import Request  # noqa: E402
from tessera.workload import build_workload  # noqa: E402

MS = 1e3


def params(cfg: DictConfig) -> dict[str, Any]:
    """cfg.params as plain data, with the quick-mode overrides (params.quick_overrides) applied."""
    p = OmegaConf.to_container(cfg.params, resolve=True) if cfg.params else {}
    if p.get("quick"):
        p.update(p.get("quick_overrides", {}))
    return p


def spec_for(cfg: DictConfig, model_name: str) -> RunSpec:
    """The run's spec (engine, GPU, cost kind) with the model swapped for `model_name`."""
    spec = resolve(cfg)
    try:
        model = models.model(model_name)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"params.models: {err}") from None
    return replace(spec, model=model, workers=tuple(replace(w, model=model) for w in spec.workers))


def kv_setup(cfg: DictConfig, name: str, **overrides) -> KVSetup | None:
    """The run's kvpolicy group with the policy name and parameters replaced (None for full KV).

    The simulator settings always carry over; the group's policy parameters (topk_pages, rerank_interval,
    ...) carry over to arms of the group's own policy, so kvpolicy.* overrides reach them."""
    if name == "full":
        return None
    base = OmegaConf.to_container(cfg.kvpolicy, resolve=True) if cfg.kvpolicy else {}
    same_policy = base.get("name") == name
    base = {k: v for k, v in base.items() if k != "name" and (same_policy or k in SIM_KEYS)}
    try:
        return KVSetup.from_conf({**base, "name": name, **overrides})
    except ValueError as err:
        raise ConfigError(str(err)) from None


def arms(cfg: DictConfig, p: dict, default: list[dict]) -> list[dict]:
    """The policies an experiment compares (params.policies, else `default`), each with its label made from
    the values that run: an arm of the kvpolicy group's policy gets the group's topk_pages unless it sets
    its own, so the label says the K that ran."""
    out, seen = [], set()
    for arm in p.get("policies") or default:
        arm = dict(arm)
        if "label" not in arm:
            arm["label"] = arm_label(cfg, arm)
        while arm["label"] in seen:  # two arms that ran the same settings stay apart
            arm["label"] += "'"
        seen.add(arm["label"])
        out.append(arm)
    return out


def arm_label(cfg: DictConfig, arm: dict) -> str:
    if arm["name"] == "full":
        return "vLLM"
    kv = kv_setup(cfg, arm["name"], **{k: v for k, v in arm.items() if k not in ("name", "rates", "label")})
    pretty = {"flexicache": "FlexiCache", "flexicache_adaptive": "FlexiCache-adaptive", "quest": "Quest"}
    label = pretty.get(arm["name"], arm["name"])
    if "topk_pages" in kv.params:
        label += f" K={int(kv.params['topk_pages']) * int(kv.params.get('page_tokens', 16))}"
    if arm["name"] == "flexicache" and int(kv.params.get("rerank_interval", 16)) != 16:
        label += f" R={kv.params['rerank_interval']}"
    return label


def ran(cfg: DictConfig, policies: list[dict], model_names: Sequence[str]) -> dict:
    """What the experiment simulated, for summary.json: models, GPU, engine limits and every arm's KV policy
    with the parameters in force."""
    spec = resolve(cfg)
    setups = {}
    for arm in policies:
        kv = kv_setup(cfg, arm["name"], **{k: v for k, v in arm.items() if k not in ("name", "rates", "label")})
        setups[arm["label"]] = {"name": "full"} if kv is None else kv.ran(spec.model)  # the sim settings it reads
    return {"models": list(model_names), "gpu": spec.gpu.name, "num_workers": len(spec.workers), "router": spec.router,
            "tp": spec.workers[0].tp, "cost_model": spec.cost_kind, "engine": asdict(spec.scheduler) | asdict(spec.memory),
            "policies": setups}


def workload(num_requests: int, prompt: Sequence[int], output: Sequence[int], arrival: Mapping,
             seed: int) -> list[Request]:
    """Synthetic requests: prompt and output lengths uniform in the given [lo, hi] ranges (the paper's
    L-Eval prompts of 10k-30k tokens are not available here; lengths are drawn uniformly instead)."""
    return build_workload({"kind": "synthetic", "num_requests": int(num_requests), "arrival": dict(arrival),
                           "lengths": {"kind": "uniform", "prompt_tokens": list(prompt),
                                       "output_tokens": list(output)}, "seed": int(seed)})


def simulate(spec: RunSpec, requests: list[Request], kv: KVSetup | None) -> tuple[dict, pd.DataFrame]:
    """One simulation -> (a flat table row of throughput, latency and KV counters, the request frame)."""
    try:
        result = run_sim(spec, requests, kv=kv)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    s = summarize(result.requests, result.kv_usage)
    kvs = result.kv
    row = {
        "finished": s["num_finished"], "rejected": s["num_rejected"], "preemptions": s["preemptions"],
        "duration_s": s["duration_s"], "req_per_s": s["request_throughput_per_s"],
        "out_tok_per_s": s["output_token_throughput_per_s"],
        "ttft_mean_ms": s["ttft_s"]["mean"] * MS, "ttft_p99_ms": s["ttft_s"]["p99"] * MS,
        "tpot_mean_ms": s["tpot_s"]["mean"] * MS, "tpot_p99_ms": s["tpot_s"]["p99"] * MS,
        "kv_util_mean": s.get("kv_utilisation", {}).get("mean", float("nan")),
        "pcie_h2d_gb": kvs.get("pcie_h2d_bytes", 0.0) / 1e9, "pcie_d2h_gb": kvs.get("pcie_d2h_bytes", 0.0) / 1e9,
        "h2d_busy_s": kvs.get("pcie_h2d_busy_s", 0.0), "d2h_busy_s": kvs.get("pcie_d2h_busy_s", 0.0),
        "reloads": kvs.get("num_reloads", 0), "stall_s": kvs.get("stall_s", 0.0),
        "peak_host_gib": kvs.get("peak_host_kv_bytes", 0.0) / 2**30,
    }
    iters = int(result.workers["iterations"].sum())
    decoded = int(result.requests["output_tokens"].sum())
    row["mean_batch"] = decoded / iters if iters else float("nan")  # output tokens per iteration
    return row, result.requests


def show_table(frame: pd.DataFrame, run_dir: Path, name: str, title: str, print_table: bool) -> Path:
    path = run_dir / f"{name}.csv"
    frame.to_csv(path, index=False)
    if print_table:
        with pd.option_context("display.width", 200, "display.max_columns", 40, "display.float_format",
                               lambda v: f"{v:.4g}"):
            print(title)
            print(frame.to_string(index=False))
    return path


def finish(run_dir: Path, summary: dict, metadata: dict, frames: list[pd.DataFrame] | None = None) -> dict:
    """Write requests.parquet (all simulated requests, tagged by nothing: see the CSV tables), an empty KV
    usage table and summary.json, so `tessera` sees the run as complete and skips it when re-run."""
    requests = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    save_run(run_dir, requests, summary, None, metadata)
    return summary
