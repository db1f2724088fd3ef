"""Headlines of the mosaic experiment: MOSAIC's speedups per dataset over the baseline, from mosaic_table.csv.

The row compared is MOSAIC with its configured aggregation (bypass on), as in the paper's abstract.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tessera.experiments.reproduce import paper
from tessera.experiments.reproduce.claims import PaperClaim
from tessera.experiments.reproduce.headlines import Headline

ACCURACY = PaperClaim("at_most", 0.1, unit="pp", text="within 0.1 pp", source=paper.MOSAIC)


def mosaic(run_dir: Path) -> list[Headline]:
    table = pd.read_csv(run_dir / "mosaic_table.csv")
    baseline = json.loads((run_dir / "summary.json").read_text())["summary"].get("baseline", "sequential")
    ours = table[table["scheduler"] == "mosaic"]
    bypass = ours[ours["aggregation"] != "always"]
    ours = bypass if len(bypass) else ours
    rows = []
    for r in ours.itertuples():
        run = f"{r.dataset}, mosaic/{r.aggregation} over {baseline}"
        rows += [Headline(f"{run}: end-to-end speedup", r.speedup_e2e, "x", paper.MOSAIC_E2E),
                 Headline(f"{run}: expert-stage speedup", r.speedup_expert, "x", paper.MOSAIC_EXPERT),
                 Headline(f"{run}: aggregator-stage speedup", r.speedup_aggregator, "x", paper.MOSAIC_AGGREGATOR),
                 Headline(f"{run}: accuracy change vs {baseline} (absolute)", abs(r.accuracy_change_pts), "pp",
                          ACCURACY)]
    return rows
