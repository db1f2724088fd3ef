"""The engine phase's CUDA branch with every engine forced onto the CPU (no GPU here): the comparisons pass
when the paths agree, and the offload check catches copies that do not go through a pinned pool on a side
stream (here: a pageable CPU pool, no stream)."""
import pytest

from tessera.gpu_check import engine_runs
from tessera.gpu_check.phases import engine as phase
from tessera.gpu_check.result import PhaseResult, Recorder
from tests.runtime.conftest import one_thread  # noqa: F401  (autouse: torch on one thread)


@pytest.fixture
def on_cpu(monkeypatch, tmp_path):
    make = engine_runs.make_engine
    monkeypatch.setattr(engine_runs, "make_engine", lambda folder, device, *a, **kw: make(folder, "cpu", *a, **kw))
    return Recorder(PhaseResult("engine"), tmp_path / "engine.json", tmp_path)


def test_full_path_comparisons_pass_when_the_paths_agree(on_cpu):
    phase.check_full_path(on_cpu, phase.TINY, "cuda", "tiny")
    names = [c.name for c in on_cpu.result.checks]
    assert all(c.passed for c in on_cpu.result.checks), on_cpu.result.checks
    assert any("CUDA fp32 = CPU fp32" in n for n in names) and any("bf16 log-probs" in n for n in names)
    (agree,) = on_cpu.result.targets
    assert agree.value == 100.0


def test_offload_check_catches_copies_off_the_pinned_side_stream_path(on_cpu):
    phase.check_policies(on_cpu, phase.TINY, "cuda", "tiny")
    checks = {c.name: c for c in on_cpu.result.checks}
    assert all(c.passed for n, c in checks.items() if "runs to completion" in n)
    pinned = [c for n, c in checks.items() if "pinned host pool" in n]
    assert len(pinned) == 2 and not any(c.passed for c in pinned)  # the two flexicache policies copy
    rows = on_cpu.result.tables["KV policies (fp32)"]
    assert all(r["tokens_as_cpu_%"] == 100.0 for r in rows)
