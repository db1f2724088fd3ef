"""Shared helpers of the bad-input corpus: assert a refusal's type and that its message names what is wrong.

Each test module keeps its cases in a module-level CASES table; `python -m tests.bad_inputs.corpus` prints
the count per boundary.
"""
from __future__ import annotations

import importlib

import pytest

BOUNDARIES = {
    "trace rows": "tests.bad_inputs.test_trace_rows",
    "workload specs": "tests.bad_inputs.test_workload_specs",
    "placer inputs": "tests.bad_inputs.test_placer_inputs",
    "engine limits (simulator)": "tests.bad_inputs.test_engine_limits",
    "runtime requests": "tests.bad_inputs.test_runtime_requests",
    "checkpoint files": "tests.bad_inputs.test_checkpoints",
    "composed configs": "tests.bad_inputs.test_configs",
    "CLI": "tests.bad_inputs.test_cli",
}


def refused(error_type: type[BaseException], call, *needles: str) -> str:
    """Run call(); it must raise error_type (exactly that family) with every needle in its message."""
    with pytest.raises(BaseException) as caught:
        call()
    error = caught.value
    assert isinstance(error, error_type), f"expected {error_type.__name__}, got {type(error).__name__}: {error}"
    message = str(error)
    for needle in needles:
        assert needle in message, f"{needle!r} not in the message: {message}"
    assert "Traceback" not in message
    return message


def case_counts() -> dict[str, int]:
    return {name: len(importlib.import_module(module).CASES) for name, module in BOUNDARIES.items()}


if __name__ == "__main__":
    counts = case_counts()
    for name, count in counts.items():
        print(f"{name:28s} {count:4d}")
    print(f"{'total':28s} {sum(counts.values()):4d}")
