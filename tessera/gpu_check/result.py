"""What a phase reports: checks (pass or fail), targets (a measurement against a goal, never a failure),
skipped parts with their reasons, and tables for the Markdown report.

A Recorder saves the result as JSON after every addition, so a phase killed at its timeout still tells
what it did.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAILED_STATUSES = ("failed", "timeout", "error")


@dataclass
class Check:
    name: str
    passed: bool
    value: str = ""
    detail: str = ""


@dataclass
class Target:
    """A measurement; `goal` None means reported only. met: value >= goal (<= goal when lower is better)."""

    name: str
    value: float | None
    goal: float | None = None
    unit: str = ""
    detail: str = ""
    lower_is_better: bool = False

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None:
            return None
        return self.value <= self.goal if self.lower_is_better else self.value >= self.goal

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return ""
        return f"{'<=' if self.lower_is_better else '>='} {self.goal:g} {self.unit}".strip()


@dataclass
class Skip:
    what: str
    reason: str


@dataclass
class PhaseResult:
    name: str
    status: str = "running"  # running | passed | failed | skipped | timeout | error
    reason: str = ""
    wall_s: float = 0.0
    timeout_s: float = 0.0
    log: str = ""
    checks: list[Check] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    tables: dict[str, list[dict]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def conclude(self) -> None:
        """passed / failed from the checks; skipped when nothing was checked and something was skipped."""
        if self.failed_checks:
            self.status = "failed"
            self.reason = "; ".join(c.name for c in self.failed_checks[:5])
            if len(self.failed_checks) > 5:
                self.reason += f" (+{len(self.failed_checks) - 5} more)"
        elif self.checks:
            self.status = "passed"
        else:
            self.status = "skipped"
            self.reason = self.reason or "; ".join(s.reason for s in self.skipped[:1]) or "nothing to check"

    def to_dict(self) -> dict:
        out = asdict(self)
        for t, d in zip(self.targets, out["targets"]):
            d["met"] = t.met
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "PhaseResult":
        d = dict(d)
        d["checks"] = [Check(**c) for c in d.get("checks", [])]
        d["targets"] = [Target(**{k: float(v) if k in ("value", "goal") and isinstance(v, str) else v
                                  for k, v in t.items() if k != "met"}) for t in d.get("targets", [])]
        d["skipped"] = [Skip(**s) for s in d.get("skipped", [])]
        return cls(**d)

    @classmethod
    def load(cls, path: Path) -> "PhaseResult":
        return cls.from_dict(json.loads(path.read_text()))


class Recorder:
    """Adds to a PhaseResult, prints one log line per addition and saves the JSON each time."""

    def __init__(self, result: PhaseResult, path: Path, out_dir: Path) -> None:
        self.result, self.path, self.out_dir = result, path, out_dir
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(dumps(self.result.to_dict()) + "\n")
        tmp.replace(self.path)  # a reader never sees half a file

    def check(self, name: str, passed: bool, value: Any = "", detail: str = "") -> bool:
        passed = bool(passed)
        self.result.checks.append(Check(name, passed, str(value), detail))
        print(f"[{'PASS' if passed else 'FAIL'}] {name}: {value}" + (f" ({detail})" if detail else ""), flush=True)
        self.save()
        return passed

    def target(self, name: str, value: float | None, goal: float | None = None, unit: str = "",
               detail: str = "", lower_is_better: bool = False) -> None:
        t = Target(name, None if value is None else float(value), goal, unit, detail, lower_is_better)
        self.result.targets.append(t)
        verdict = {True: "met", False: "NOT met", None: "reported"}[t.met]
        print(f"[TARGET {verdict}] {name}: {value} {unit}" + (f" (goal {t.goal_text})" if t.goal_text else ""),
              flush=True)
        self.save()

    def skip(self, what: str, reason: str) -> None:
        self.result.skipped.append(Skip(what, reason))
        print(f"[SKIP] {what}: {reason}", flush=True)
        self.save()

    def table(self, name: str, rows: list[dict]) -> None:
        self.result.tables[name] = rows
        self.save()

    def info(self, key: str, value: Any) -> None:
        self.result.info[key] = value
        self.save()


def dumps(obj: Any) -> str:
    """Strict JSON: inf and nan become the strings "inf", "-inf", "nan"; numpy/torch scalars plain numbers."""
    return json.dumps(_plain(obj), indent=1, allow_nan=False)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)
