"""A few bad inputs through the real `tessera` command: exit code 2, one `tessera: config error:` line, no traceback.

Each run costs seconds, so the corpus drives most cases through the library; these check the last mile.
"""
import json

import pytest

from tests.experiments.conftest import run_cli

QUIET = ["output.progress=false", "output.figures=false", "output.print_table=false"]


def user_trace(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,5,5\n2023-11-16 18:17:04,1e23,5\n")
    return path


# (id, overrides (a callable of tmp_path for file cases), needles of the one error line)
EXIT_2 = [
    ("users-trace-1e23", lambda p: [f"workload.name={user_trace(p)}"],
     ["mine.csv", "data row 2 (line 3)", "'ContextTokens'", "10,000,000"]),
    ("rate-string", lambda p: ["workload=sharegpt_poisson", "workload.arrival.rate=abc"],
     ["workload.arrival", "rate", "'abc'"]),
    ("kv-gib-holds-no-block", lambda p: ["cluster.kv_gib=0.00000001"], ["cluster.kv_gib", "holds no KV block"]),
]


@pytest.mark.parametrize("make, needles", [c[1:] for c in EXIT_2], ids=[c[0] for c in EXIT_2])
def test_cli_exits_2_with_one_line_naming_the_problem(tmp_path, make, needles):
    proc = run_cli([*make(tmp_path), *QUIET], cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("tessera: config error:"), proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def test_prompts_over_the_step_budget_are_rejected_not_a_stall(tmp_path):
    """chunked_prefill=false with prompts over max_num_batched_tokens: a finished run whose results say why."""
    proc = run_cli(["engine.chunked_prefill=false", "engine.max_num_batched_tokens=1000", "workload.limit=20",
                    f"hydra.run.dir={tmp_path / 'run'}", *QUIET], cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]
    assert 0 < summary["num_rejected"] < summary["num_requests"] == 20


CASES = [c[0] for c in EXIT_2] + ["prompts-over-step-budget-rejected"]
