"""Helpers for app tests: compose configs in-process, run the CLI in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tessera.experiments.config import register_configs
from tessera.paths import REPO_ROOT

CONF = REPO_ROOT / "conf"
SMALL = ["workload.limit=300", "output.progress=false", "output.figures=false"]


@pytest.fixture
def composed():
    register_configs()

    def _compose(overrides=()):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test"):
            return compose(config_name="config", overrides=list(overrides))
    return _compose


def run_cli(args, cwd: Path, timeout=300):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    exe = Path(sys.executable).parent / "tessera"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
