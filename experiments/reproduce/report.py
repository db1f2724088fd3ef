"""Build the reproduction report: run table, headline results (beside the papers' numbers in full runs), figures.

Quick runs are smoke tests: their section shows results only, never a paper number or a deviation.
"""
from __future__ import annotations

from pathlib import Path

from tessera.experiments.reproduce.document import (Block, Heading, Image, Paragraph, Preformatted, Table, to_html,
                                                   to_markdown)
from tessera.experiments.reproduce.headlines import Headline
from tessera.experiments.reproduce.machine import Machine
from tessera.experiments.reproduce.progress import duration
from tessera.experiments.reproduce.runner import RunResult

TITLE = "Reproducing the papers: FlexiCache and MOSAIC on the Tessera simulator"
QUICK_NOTE = ("**Quick mode: smoke tests, not comparable with the papers.** Every experiment ran with "
              "`params.quick=true` (its `params.quick_overrides`: a few requests, short outputs, one model or a "
              "slice of the grid), to check that it runs end to end and writes its tables and figures. The numbers "
              "below are those small runs' results; they are not comparable with the papers', so no paper number or "
              "deviation is shown. Run `tessera-reproduce` without `--quick` for the comparison.")
QUICK_FIGURES = ("Figures of the quick runs. Reference lines or marks an experiment draws for the paper are part of "
                 "its figure code, not a comparison of these quick results.")


def build_report(results: list[RunResult], headlines: dict[str, list[Headline] | str], machine: Machine,
                 quick: bool, total_s: float, invocation: str) -> list[Block]:
    failed = [r.experiment.name for r in results if not r.ok]
    blocks: list[Block] = [Heading(TITLE, 1)]
    if quick:
        blocks.append(Paragraph(QUICK_NOTE))
    sha = machine.git_sha + (" (with uncommitted changes)" if machine.uncommitted_changes else "")
    blocks.append(Table(["about this run", ""], [
        ["command", f"`{invocation}`"], ["mode", "quick (smoke tests)" if quick else "full"],
        ["date", machine.date_utc], ["git SHA", sha],
        ["machine", f"{machine.cpus} CPUs, {machine.platform}, Python {machine.python}"],
        ["load average at start (1/5/15 min)", machine.load_average], ["total wall time", duration(total_s)],
        ["experiments", f"{len(results) - len(failed)} ok" + (f", failed: {', '.join(failed)}" if failed else "")]]))
    blocks += [Heading("Runs"), Table(["paper figure", "command", "run time", "output folder", "status"], [
        [r.experiment.figure, f"`{' '.join(r.command)}`", duration(r.seconds),
         f"[{r.experiment.name}/]({r.experiment.name}/)", r.status if r.ok else f"**{r.status}**"] for r in results])]
    blocks.append(Heading("Results (quick runs, not comparable with the papers)" if quick
                          else "Results beside the papers' numbers"))
    for r in results:
        blocks += result_section(r, headlines.get(r.experiment.name, []), quick)
    blocks.append(Heading("Figures"))
    if quick:
        blocks.append(Paragraph(QUICK_FIGURES))
    for r in results:
        pngs = sorted(r.run_dir.glob("*.png")) if r.ok else []
        if pngs:
            blocks.append(Heading(f"{r.experiment.name}: {r.experiment.figure}", 3))
            blocks += [Image(f"{r.experiment.name}/{p.name}", f"{r.experiment.name} {p.stem}") for p in pngs]
    return blocks


def result_section(run: RunResult, rows: list[Headline] | str, quick: bool) -> list[Block]:
    e = run.experiment
    blocks: list[Block] = [Heading(f"{e.name}: {e.figure}", 3)]
    if not run.ok:
        why = Paragraph(f"**{run.status}** after {duration(run.seconds)}; the last lines of its stderr (all of it in "
                        f"`{e.name}/stderr.txt`):")
        return blocks + [why, Preformatted(run.stderr_tail or "(empty)")]
    if isinstance(rows, str):
        return blocks + [Paragraph(f"The run finished but its results could not be read: {rows}")]
    if quick:
        return blocks + [Table(["quantity", "result"], [[h.quantity, h.shown_result()] for h in rows])]
    if e.note:
        blocks.append(Paragraph(e.note))
    table = Table(["quantity", "result", "paper", "deviation"], [full_row(h) for h in rows])
    verdicts = [h.claim.deviation(h.result)[0] for h in rows if h.claim and h.claim.kind != "value"]
    if verdicts:
        blocks.append(Paragraph(f"{verdicts.count('inside')} of {len(verdicts)} results inside the paper's band or "
                                "bound; point values show their difference."))
    sources = sorted({h.claim.source for h in rows if h.claim and h.claim.source})
    blocks.append(table)
    if sources:
        blocks.append(Paragraph("Paper numbers from " + "; ".join(f"`{s}`" for s in sources) + "."))
    return blocks


def full_row(h: Headline) -> list[str]:
    if h.claim is None:
        return [h.quantity, h.shown_result(), h.paper_note or "-", "-"]
    verdict, how_far = h.claim.deviation(h.result)
    return [h.quantity, h.shown_result(), h.claim.shown(), f"**{how_far}**" if verdict == "outside" else how_far]


def write_report(blocks: list[Block], out: Path) -> tuple[Path, Path]:
    md, page = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks))
    page.write_text(to_html(blocks, TITLE))
    return md, page
