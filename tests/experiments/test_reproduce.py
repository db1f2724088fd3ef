"""`tessera-reproduce`: quick report without paper numbers, full-mode comparison, a failed experiment reported.

Runs the cheap experiments only (seconds each): flexicache_memory, flexicache_rerank_cost, mosaic's quick slice.
"""
import functools

import pytest

from tessera.experiments.reproduce import cli
from tessera.experiments.reproduce.claims import PaperClaim

PAPER_STRINGS = [">70%", "75%", "2.44", "1.7-2.3", "up to 2.5", "4.23", "71.5", "34.6", "44.9", "1.38-1.55",
                 "| paper |", "| deviation |"]


def test_quick_report_has_the_run_table_and_figures_and_no_paper_numbers(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["--quick", "--only", "flexicache_memory", "mosaic", "--out", str(out)]) == 0
    progress = capsys.readouterr().out
    assert "[1/2] flexicache_memory" in progress and "[2/2] mosaic" in progress and "ETA" in progress
    report = (out / "report.md").read_text()
    assert "smoke tests, not comparable with the papers" in report
    assert f"`tessera experiment=mosaic params.quick=true hydra.run.dir={out / 'mosaic'} output.progress=false`" \
        in report
    for png in ("flexicache_memory/memory.png", "mosaic/mosaic_speedups.png"):
        assert f"]({png})" in report and (out / png).exists()
    assert "end-to-end speedup" in report and "GPU KV saved at 20,000 tokens" in report
    # from the run table on: the "about this run" table holds the machine's load average, which can read e.g. 4.23
    assert not [s for s in PAPER_STRINGS if s in report.split("## Runs", 1)[1]]
    assert (out / "mosaic" / "stdout.txt").read_text()
    assert '<img src="mosaic/mosaic_gantt.png"' in (out / "report.html").read_text()


def test_full_report_puts_paper_numbers_and_deviations_beside_results(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["--only", "flexicache_memory", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| quantity | result | paper | deviation |" in report
    assert ">70% at >= 20k tokens (K = 1,024)" in report and "meets it: +" in report
    assert "asymptote 75%" in report and "smoke tests" not in report


def test_a_failed_experiment_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    bad = {"flexicache_memory": ["params.no_such_key=1"]}
    monkeypatch.setattr(cli, "reproduce", functools.partial(cli.reproduce, extra_overrides=bad))
    assert cli.main(["--quick", "--only", "flexicache_memory", "flexicache_rerank_cost", "--out", str(out)]) == 1
    assert "failed: flexicache_memory" in capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "**failed (exit 2)**" in report and "no_such_key" in report
    assert "1 ok, failed: flexicache_memory" in report
    assert (out / "flexicache_rerank_cost" / "summary.json").exists()
    assert "](flexicache_rerank_cost/rerank_cost.png)" in report


def test_unknown_experiment_name_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--only", "no_such_experiment"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("claim, result, verdict, text", [
    (PaperClaim("band", 1.38, 1.55), 1.2, "outside", "below the band by 0.18x (13.0%)"),
    (PaperClaim("band", 1.38, 1.55), 1.5, "inside", "inside the band"),
    (PaperClaim("at_least", 70.0, unit="%"), 71.16, "inside", "meets it: +1.16 pp"),
    (PaperClaim("at_most", 2.5), 3.0, "outside", "exceeds it: +0.5x (+20.0%)"),
    (PaperClaim("value", 34.6, unit="ms"), 30.0, "off", "-4.6 ms (-13.3%)"),
])
def test_deviation_from_a_paper_claim(claim, result, verdict, text):
    assert claim.deviation(result) == (verdict, text)
