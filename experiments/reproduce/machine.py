"""Where and when a reproduction ran: git SHA (and uncommitted changes), date, CPUs, platform, load.

Recorded in the report so its run times and results can be traced to code and hardware.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass

from tessera.paths import REPO_ROOT


@dataclass(frozen=True)
class Machine:
    git_sha: str
    uncommitted_changes: bool
    date_utc: str
    cpus: int
    platform: str
    python: str
    load_average: str  # 1/5/15-minute load when the run started ("n/a" where unsupported)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def describe_machine() -> Machine:
    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    return Machine(git_sha=_git("rev-parse", "HEAD").strip() or "unknown",
                   uncommitted_changes=bool(_git("status", "--porcelain", "--untracked-files=no").strip()),
                   date_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                   cpus=os.cpu_count() or 0, platform=platform.platform(), python=platform.python_version(),
                   load_average=load)
