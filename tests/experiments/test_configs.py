"""Every config in conf/ composes and validates; bad values are refused with one clear line and exit code 2."""
import pytest

from tessera.experiments.config import ConfigError
from tessera.experiments.resolve import resolve
from tests.experiments.conftest import CONF, run_cli

GROUP_OPTIONS = [(group.name, yaml.stem) for group in sorted(CONF.iterdir()) if group.is_dir()
                 for yaml in sorted(group.glob("*.yaml"))]


@pytest.mark.parametrize("group,option", GROUP_OPTIONS)
def test_every_config_option_composes_and_resolves(composed, group, option):
    cfg = composed([f"{group}={option}"])
    spec = resolve(cfg)
    assert spec.workers and spec.workload


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_sweep_launchers_compose(composed, launcher):
    cfg = composed([f"hydra/launcher={launcher}"])
    assert cfg.experiment == "serve_trace"


@pytest.mark.parametrize("override,key", [
    ("cluster.num_workers=0", "cluster.num_workers"),
    ("engine.gpu_memory_utilization=1.5", "engine.gpu_memory_utilization"),
    ("cluster.router=random", "cluster.router"),
    ("model.name=Llama-9", "model.name"),
    ("cluster.gpu=TPU", "cluster.gpu"),
    ("cluster.gpu=null", "cluster.gpu"),
    ("cluster.calibration=nowhere", "cluster.calibration"),
    ("cluster.kv_gib=-1", "cluster.kv_gib"),
    ("model.path=nowhere", "model.path"),
])
def test_bad_values_are_config_errors_naming_the_key(composed, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve(composed([override]))


@pytest.mark.parametrize("override,needle", [
    ("engine.max_num_seqs=abc", "engine.max_num_seqs"),
    ("cluster.tp=3", "cluster.tp=3 is invalid"),
    ("workload.name=nope", "neither a named trace"),
    ("cluster=nope", "cluster=nope is not an option of cluster: use one of a100x1"),
])
def test_cli_prints_one_line_and_exits_2(tmp_path, override, needle):
    proc = run_cli([override, "output.progress=false"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tessera: config error:") and needle in lines[0], proc.stderr


def test_a_calibrated_cluster_models_this_machine_and_the_shipped_model(composed):
    from tessera.cost.calibration import Calibration
    from tessera.cost.profile import LayerProfile
    from tessera.paths import REPO_ROOT

    spec = resolve(composed(["cluster=cpu_calibrated", "model=tessera_tiny_byte"]))
    calib = Calibration.load(REPO_ROOT / "models" / "tessera-tiny-byte" / "calibration")
    assert spec.gpu == calib.gpu and spec.cost_kind == "profiled"
    assert isinstance(spec.cost_params["profile"], LayerProfile)
    assert spec.cost_params["overhead_s"] == calib.efficiency.overhead_s
    assert spec.workers[0].kv_bytes_per_gpu == 0.25 * 2**30
    m = spec.model
    assert (m.name, m.num_layers, m.num_kv_heads, m.head_dim, m.max_position) == ("tessera-tiny-byte", 4, 2, 32, 8192)
    assert m.num_params == 855_168 and m.dtype_bytes == 4
    overridden = resolve(composed(["cluster=cpu_calibrated", "model=tessera_tiny_byte",
                                   "+backend.cost.params.overhead_s=0.01"]))
    assert overridden.cost_params["overhead_s"] == 0.01
    with pytest.raises(ConfigError, match="backend.cost.kind"):
        resolve(composed(["cluster=cpu_calibrated", "backend=sim_roofline"]))
    assert resolve(composed(["cluster=cpu_calibrated", "backend=runtime"])).gpu == calib.gpu


def test_mosaic_refuses_a_calibrated_machine(tmp_path):
    proc = run_cli(["experiment=mosaic", "cluster=cpu_calibrated", "output.progress=false"], cwd=tmp_path)
    assert proc.returncode == 2 and "experiment=mosaic places catalog LLMs on catalog GPUs" in proc.stderr
