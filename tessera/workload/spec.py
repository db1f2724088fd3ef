"""Build a workload from a plain mapping (e.g. a Hydra config): {kind: trace | synthetic, ...}.

Allowed keys are read from each factory's signature, so a spec accepts exactly what the code does;
a bad key or kind raises ValueError naming it, the allowed values and the fix.
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from tessera.types import Request
from tessera.workload import arrivals, lengths, servegen
from tessera.workload.synthetic import synthetic
from tessera.workload.traces import load_trace

ARRIVAL_KINDS: dict[str, Callable[..., arrivals.ArrivalProcess]] = {
    "poisson": arrivals.poisson,
    "gamma": arrivals.gamma,
    "burst": arrivals.burst,
    "trace": arrivals.trace_arrivals,
}

LENGTH_KINDS: dict[str, Callable[..., lengths.LengthSampler]] = {
    "fixed": lengths.fixed,
    "uniform": lengths.uniform,
    "sharegpt": lengths.sharegpt,
    "arxiv": lengths.arxiv,
    "servegen_r1": servegen.servegen_r1,
    "trace": lengths.trace_lengths,
}


def _synthetic_workload(num_requests: int, arrival: Mapping, lengths: Mapping, seed: int = 0,
                        model: str | None = None) -> list[Request]:
    return synthetic(num_requests, build_arrivals(arrival, "workload.arrival"),
                     build_lengths(lengths, "workload.lengths"), seed, model)


def _moa_workload(dataset: str = "mmlu_pro", expert: str | None = None, num_queries: int | None = None,
                  seed: int = 0, arrival_rate: float | None = None) -> list[Request]:
    from tessera.workload.moa_requests import moa_expert_requests  # the MoA generator is heavy to import

    return moa_expert_requests(dataset, expert, num_queries, seed, arrival_rate)


WORKLOAD_KINDS: dict[str, Callable[..., list[Request]]] = {
    "trace": load_trace,
    "synthetic": _synthetic_workload,
    "moa": _moa_workload,
}


def build_workload(spec: Mapping[str, Any]) -> list[Request]:
    """Requests from a spec such as {kind: trace, name: azure_code, limit: 1000} or
    {kind: synthetic, num_requests: 500, arrival: {kind: poisson, rate: 2.0},
    lengths: {kind: sharegpt}, seed: 0}."""
    return _build(spec, WORKLOAD_KINDS, "workload")


def build_arrivals(spec: Mapping[str, Any], where: str = "arrival") -> arrivals.ArrivalProcess:
    return _build(spec, ARRIVAL_KINDS, where)


def build_lengths(spec: Mapping[str, Any], where: str = "lengths") -> lengths.LengthSampler:
    return _build(spec, LENGTH_KINDS, where)


def allowed_keys(factory: Callable[..., Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) spec keys of a factory, besides 'kind'."""
    params = inspect.signature(factory).parameters.values()
    required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
    optional = tuple(p.name for p in params if p.default is not inspect.Parameter.empty)
    return required, optional


def _build(spec: Mapping[str, Any], kinds: Mapping[str, Callable[..., Any]], where: str) -> Any:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping with a 'kind' key, got "
                         f"{type(spec).__name__} {spec!r}; fix: write it as {{kind: ..., ...}}")
    kind_list = ", ".join(kinds)
    if "kind" not in spec:
        raise ValueError(f"{where}: missing key 'kind'; allowed kinds: {kind_list}; "
                         f"fix: add kind: <one of them>")
    kind = spec["kind"]
    if kind not in kinds:
        raise ValueError(f"{where}.kind: unknown value {kind!r}; allowed kinds: {kind_list}"
                         f"{_did_you_mean(str(kind), kinds)}; fix: use one of them")
    factory = kinds[kind]
    required, optional = allowed_keys(factory)
    params = {key: value for key, value in spec.items() if key != "kind"}
    for key in params:
        if key not in required + optional:
            raise ValueError(
                f"{where}: unknown key {key!r} for kind {kind!r}; allowed keys: kind, "
                f"{', '.join(required + optional)}{_did_you_mean(str(key), required + optional)}; "
                f"fix: rename or remove it")
    if missing := [key for key in required if key not in params]:
        raise ValueError(f"{where}: missing required key {missing[0]!r} for kind {kind!r}; "
                         f"required: {', '.join(required)}; fix: add it")
    try:
        return factory(**params)
    except ValueError as error:
        if str(error).startswith(f"{where}."):  # already located by a nested spec
            raise
        raise type(error)(f"{where} (kind {kind!r}): {error}") from error


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
