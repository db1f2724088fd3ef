"""The kit's phases in run order: name, the letter `--phases` also accepts, exit-status bit, share of the
time budget, and whether the phase as a whole needs CUDA (then `--device cpu` lists it as skipped).

Each phase is a module here with ``run(rec: Recorder, device: str) -> None``, run in its own subprocess.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str
    letter: str
    bit: int  # the kit's exit status is the OR of the failed phases' bits
    nominal_s: float  # share of the default 480 s budget
    needs_cuda: bool
    summary: str

    @property
    def module(self) -> str:
        return f"tessera.gpu_check.phases.{self.name}"


PHASES = (
    Phase("env", "", 1, 20, False, "versions, GPU, pinned memory, a Triton smoke kernel; refuses old torch/Triton"),
    Phase("kernels", "a", 2, 170, False, "every Triton kernel and dtype against its torch reference"),
    Phase("engine", "b", 4, 110, False, "the engine: CUDA vs CPU tokens, every KV policy, offload, host syncs"),
    Phase("bench", "c", 8, 80, True, "decode kernels vs peak HBM and SDPA; copy_blocks vs the PCIe link"),
    Phase("calibration", "d", 16, 100, False, "calibrate_runtime --quick and its sim-vs-runtime errors"),
)
BY_NAME = {p.name: p for p in PHASES}


def select(spec: str | None) -> list[Phase]:
    """Phases named in a comma list of names or letters (a-d), in run order; env always runs first."""
    if not spec:
        return list(PHASES)
    wanted = set()
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        match = [p for p in PHASES if item in (p.name, p.letter)]
        if not match:
            choices = ", ".join(f"{p.letter}={p.name}" if p.letter else p.name for p in PHASES)
            raise ValueError(f"unknown phase {item!r}: choose from {choices}")
        wanted.add(match[0].name)
    wanted.add("env")
    return [p for p in PHASES if p.name in wanted]
