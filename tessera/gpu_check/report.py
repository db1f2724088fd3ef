"""The kit's outputs: DIR/report.json (everything, strict JSON) and DIR/report.md (the same, for people)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.gpu_check.phases import BY_NAME
from tessera.gpu_check.result import PhaseResult, dumps


def exit_status(results: list[PhaseResult]) -> int:
    """OR of the failed phases' bits (env 1, kernels 2, engine 4, bench 8, calibration 16); 0: none failed."""
    code = 0
    for r in results:
        if r.failed:
            code |= BY_NAME[r.name].bit
    return code


def failed_names(results: list[PhaseResult]) -> list[str]:
    return [r.name for r in results if r.failed]


def write_reports(out: Path, results: list[PhaseResult], header: dict[str, Any]) -> tuple[Path, Path]:
    summary = {**header, "failed_phases": failed_names(results), "exit_status": exit_status(results),
               "phases": [r.to_dict() for r in results]}
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(dumps(summary) + "\n")
    md_path.write_text(markdown(results, header))
    return json_path, md_path


def markdown(results: list[PhaseResult], header: dict[str, Any]) -> str:
    failed = failed_names(results)
    verdict = f"FAILED: {', '.join(failed)}" if failed else "PASSED"
    lines = ["# Tessera GPU check", "",
             f"**{verdict}** (exit status {exit_status(results)}), device `{header['device']}`, "
             f"{header['wall_s']:.0f} s of a {header['budget_s']:.0f} s budget, {header['started_utc']}.", ""]
    versions = header.get("versions") or {}
    if versions:
        lines += ["Versions: " + ", ".join(f"{k} `{v}`" for k, v in versions.items()), ""]
    lines += ["| phase | status | wall s | timeout s | reason |", "|---|---|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.status} | {r.wall_s:.0f} | {r.timeout_s:.0f} | {_cell(r.reason)} |")
    for r in results:
        lines += ["", f"## {r.name}: {r.status}", ""]
        if r.reason:
            lines += [_cell(r.reason), ""]
        if r.log:
            lines += [f"Log: `{r.log}`", ""]
        if r.checks:
            lines += ["| check | result | value | detail |", "|---|---|---|---|"]
            lines += [f"| {_cell(c.name)} | {'pass' if c.passed else '**FAIL**'} | {_cell(c.value)} | "
                      f"{_cell(c.detail)} |" for c in r.checks]
            lines.append("")
        if r.targets:
            lines += ["| target | measured | goal | met | detail |", "|---|---:|---:|---|---|"]
            for t in r.targets:
                value = "n/a" if t.value is None else f"{t.value:.4g} {t.unit}".strip()
                goal = t.goal_text
                met = {True: "yes", False: "**no**", None: "reported"}[t.met]
                lines.append(f"| {_cell(t.name)} | {value} | {goal} | {met} | {_cell(t.detail)} |")
            lines.append("")
        if r.skipped:
            lines += [f"- skipped: {_cell(s.what)}: {_cell(s.reason)}" for s in r.skipped]
            lines.append("")
        for name, rows in r.tables.items():
            lines += [f"**{name}**", ""] + _table(rows) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(empty)"]
    cols = list(dict.fromkeys(k for row in rows for k in row))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        out.append("| " + " | ".join(_cell(_fmt(row.get(c, ""))) for c in cols) + " |")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
