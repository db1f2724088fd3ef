"""Workloads: replayed traces (Azure 2023, Mooncake) and synthetic requests (arrivals x lengths).

Start at build_workload (a plain-mapping spec) or load_trace / synthetic; all return list[Request].
"""
from tessera.workload.arrivals import (ArrivalProcess, BurstArrivals, GammaArrivals, TraceArrivals,
                                       burst, gamma, poisson, trace_arrivals)
from tessera.workload.lengths import (ClippedLengths, EmpiricalLengths, FixedLengths,
                                      LengthSampler, UniformLengths, arxiv, fixed, sharegpt,
                                      trace_lengths, uniform)
from tessera.workload.limits import TokenLimits
from tessera.workload.servegen import Pmf, ServeGenLengths, servegen_r1
from tessera.workload.spec import build_arrivals, build_lengths, build_workload
from tessera.workload.summary import describe
from tessera.workload.synthetic import synthetic
from tessera.workload.trace_files import (NAMED_TRACES, TraceError, TraceTable, read_trace_file,
                                          resolve_trace_path)
from tessera.workload.traces import load_trace, to_requests

__all__ = [
    "ArrivalProcess", "BurstArrivals", "ClippedLengths", "EmpiricalLengths", "FixedLengths",
    "GammaArrivals", "LengthSampler", "NAMED_TRACES", "Pmf", "ServeGenLengths", "TokenLimits",
    "TraceArrivals", "TraceError", "TraceTable", "UniformLengths", "arxiv", "build_arrivals",
    "build_lengths", "build_workload", "burst", "describe", "fixed", "gamma", "load_trace",
    "poisson", "read_trace_file", "resolve_trace_path", "servegen_r1", "sharegpt", "synthetic",
    "to_requests", "trace_arrivals", "trace_lengths", "uniform",
]
