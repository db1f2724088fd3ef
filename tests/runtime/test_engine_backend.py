"""backend=runtime in the Hydra app: the serve_trace experiment runs on the real engine with the same
workload, KV-policy config and results schema as backend=sim."""
import json

import pandas as pd
import pytest

from tessera.results.schema import REQUEST_COLUMNS
from tessera.runtime.checkpoint import save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.model import Transformer
from tests.experiments.conftest import run_cli


def test_serve_trace_runs_on_the_runtime_backend(tmp_path):
    model = Transformer(ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2))
    model.init_weights(seed=0)
    save_checkpoint(model, tmp_path / "ckpt")
    proc = run_cli(["backend=runtime", f"model.path={tmp_path / 'ckpt'}", "model.name=tiny", "backend.runtime.num_threads=1",
                    "backend.runtime.max_prompt_tokens=64", "backend.runtime.max_output_tokens=6",
                    "workload=sharegpt_poisson", "workload.num_requests=5", "kvpolicy=flexicache",
                    "kvpolicy.topk_pages=2", "output.progress=false", "output.figures=false",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "on the runtime (cpu)" in proc.stdout and "TTFT" in proc.stdout
    frame = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    assert list(frame.columns)[:len(REQUEST_COLUMNS)] == list(REQUEST_COLUMNS) or set(REQUEST_COLUMNS) <= set(frame.columns)
    assert len(frame) == 5 and (frame["status"] == "finished").all()
    assert (frame["first_token_s"] >= frame["arrival_s"]).all() and (frame["output_tokens"] <= 6).all()


def test_a_missing_checkpoint_is_a_config_error(tmp_path):
    proc = run_cli(["backend=runtime", f"model.path={tmp_path / 'nope'}", "workload=sharegpt_poisson",
                    "workload.num_requests=2", "output.progress=false", "output.figures=false",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2 and "has no config.json" in proc.stderr


def test_a_catalog_model_or_the_old_model_path_key_is_a_config_error(tmp_path):
    common = ["workload=sharegpt_poisson", "workload.num_requests=2", "output.progress=false",
              "output.figures=false", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_cli(["backend=runtime", "model=llama2_70b", *common], cwd=tmp_path)
    assert proc.returncode == 2 and "catalog entry without weights" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(["backend=runtime", "model=tessera_tiny_byte", "+backend.runtime.model_path=x", *common],
                   cwd=tmp_path)
    assert proc.returncode == 2 and "backend.runtime.model_path is gone" in proc.stderr


@pytest.mark.slow
def test_smollm2_serves_requests_end_to_end(tmp_path, smollm2):
    """The real model by name: built on first use (make smollm2), then served like any workload."""
    proc = run_cli(["backend=runtime", "model=smollm2", "workload=sharegpt_poisson", "workload.num_requests=3",
                    "backend.runtime.num_threads=1", "backend.runtime.max_prompt_tokens=48",
                    "backend.runtime.max_output_tokens=4", "output.progress=false", "output.figures=false",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]
    assert summary["num_finished"] == 3
    ran = summary["runtime"]
    assert ran["model_folder"].endswith("models/smollm2-135m-instruct") and ran["device"] == "cpu"
    assert ran["model_name"] == "SmolLM2-135M-Instruct"
