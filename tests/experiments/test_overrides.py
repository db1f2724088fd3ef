"""Every override takes effect or is refused: for every experiment, changing each policy, engine, cluster,
model, workload or backend key either changes what the run executes (its describe(), which becomes
summary.json's metadata.ran) or stops with a ConfigError naming the key. Nothing is silently ignored."""
import json
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tessera.experiments.config import ConfigError, register_configs
from tessera.experiments.overrides import check_run
from tessera.experiments.registry import experiment_describer
from tests.experiments.conftest import CONF, run_cli

EXPERIMENTS = {
    "serve_trace/sim": [],
    "serve_trace/sim_vllm_v0": ["engine.scheduler=vllm_v0"],
    "serve_trace/runtime": ["backend=runtime", "model=tessera_tiny_byte"],
    "long_context/sim": ["experiment=long_context"],
    "flexicache_memory": ["experiment=flexicache_memory"],
    "flexicache_throughput": ["experiment=flexicache_throughput"],
    "flexicache_online": ["experiment=flexicache_online"],
    "flexicache_sensitivity": ["experiment=flexicache_sensitivity"],
    "flexicache_rerank_cost": ["experiment=flexicache_rerank_cost"],
    "mosaic": ["experiment=mosaic"],
    "runtime_accuracy": ["experiment=runtime_accuracy"],
}
CHANGES = ["engine.num_scheduler_steps=4", "engine.max_num_seqs=7", "engine.max_num_batched_tokens=4096",
           "engine.chunked_prefill=false",
           "engine.watermark=0.05", "engine.gpu_memory_utilization=0.8", "engine.activation_reserve_gib=3.0",
           "engine.block_size=32", "kvpolicy=quest", "kvpolicy=flexicache", "+kvpolicy.topk_pages=8",
           "+kvpolicy.rerank_interval=4", "+kvpolicy.unstable_fraction=0.5", "+kvpolicy.host_kv_gib=10",
           "+kvpolicy.sparse_kernel_efficiency=0.5", "cluster=h100x4", "cluster.tp=2",
           "cluster.router=least_outstanding_tokens", "cluster.num_workers=2", "model=mistral_7b",
           "workload=azure_conv", "backend.fast_forward=false", "backend.cost.kind=roofline", "seed=3",
           "+backend.runtime.device_kv_gib=0.5", "+engine.max_num_seq=8", "+cluster.num_gpus=4"]


def compose_run(overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test"):
        return compose(config_name="config", overrides=list(overrides))


def outcome(base_overrides, change):
    """'refused' (ConfigError / a compose error), 'changed' (describe differs) or 'IGNORED'."""
    try:
        cfg = compose_run([*base_overrides, change])
        check_run(cfg, [change])
        ran = experiment_describer(cfg.experiment)(cfg)
    except (ConfigError, HydraException, OmegaConfBaseException):
        return "refused"
    base = compose_run(base_overrides)
    if cfg == base:
        return "same value"  # e.g. kvpolicy=flexicache where the experiment already uses it
    before = experiment_describer(base.experiment)(base)
    same = json.dumps(ran, sort_keys=True, default=str) == json.dumps(before, sort_keys=True, default=str)
    return "IGNORED" if same else "changed"


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_override_changes_what_runs_or_is_refused(experiment):
    register_configs()
    base = EXPERIMENTS[experiment]
    results = {change: outcome(base, change) for change in CHANGES}
    ignored = [c for c, r in results.items() if r == "IGNORED"]
    assert not ignored, f"{experiment}: silently ignored {ignored}"
    assert results["+engine.max_num_seq=8"] == "refused" and results["+cluster.num_gpus=4"] == "refused"


@pytest.mark.parametrize("args, message", [
    (["backend=runtime", "model=tessera_tiny_byte", "cluster=h100x4"], "cluster=h100x4 has no effect"),
    (["backend=runtime", "model=llama2_70b"], "catalog entry without weights"),
    (["experiment=flexicache_sensitivity", "kvpolicy.rerank_interval=4"], "R is swept by params.rerank_intervals"),
    (["+engine.max_num_seq=8"], "engine.max_num_seq is not a key of engine"),
    (["engine.num_scheduler_steps=8"], "engine.num_scheduler_steps=8 is invalid: use 1 with this family"),
    (["engine.scheduler=vllm_v0", "engine.num_scheduler_steps=8", "kvpolicy=flexicache"],
     "engine.num_scheduler_steps=8 is invalid: use 1 with a KV policy"),
    (["engine_profile=vllm_v0_eager", "kvpolicy=flexicache"],
     "engine_profile.control_per_token_s=3.843e-08 is invalid: use 0 with a KV policy"),
    (["engine_profile=vllm_v0_multistep", "kvpolicy=flexicache"],
     "engine_profile.graph_max_context=8192 is invalid: use null with a KV policy"),
    (["experiment=flexicache_memory", "backend=runtime"], "runs in the simulator only"),
    (["experiment=mosaic", "backend=runtime", "backend.runtime.num_threads=2"], "workers do not read it"),
    (["experiment=mosaic", "+params.runtime.bogus=3"], "params.runtime configures backend=runtime only"),
    (["experiment=mosaic", "backend=runtime", "params.query_fraction=0.5"], "runs params.runtime"),
    (["experiment=mosaic", "backend=runtime", "kvpolicy=flexicache"], "run full KV"),
    (["experiment=mosaic", "backend=runtime", "engine.block_size=32"], "read engine.max_num_seqs"),
    (["backend=runtime", "backend.runtime.workers=3"], "configure experiment=mosaic's Ray workers"),
])
def test_the_cli_refuses_ignored_keys_with_one_line(tmp_path, args, message):
    proc = run_cli([*args, "output.progress=false", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # a refused run leaves no folder behind


def test_kvpolicy_overrides_reach_the_flexicache_arm_and_its_label(tmp_path):
    proc = run_cli(["experiment=flexicache_throughput", "params.quick=true", "kvpolicy.topk_pages=128",
                    "params.quick_overrides.output_lengths=[20]", "output.progress=false", "output.figures=false",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "FlexiCache K=2048" in proc.stdout and "K=1024" not in proc.stdout
    ran = json.loads((tmp_path / "run" / "summary.json").read_text())["metadata"]["ran"]
    assert ran["policies"]["FlexiCache K=2048"]["topk_pages"] == 128
    assert "1.38-1.55x" not in proc.stdout  # quick runs do not print the paper's numbers beside them


def test_a_sweep_with_one_bad_value_launches_nothing(tmp_path):
    proc = run_cli(["-m", "workload=sharegpt_poisson", "workload.num_requests=3", "engine.max_num_seqs=4,0",
                    "sweep_name=bad", "output.progress=false"], cwd=tmp_path)
    assert proc.returncode == 2 and "1 of 2 runs of the sweep are invalid; nothing was launched" in proc.stderr
    assert not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("overrides, message", [
    (["kvpolicy=quest", "+kvpolicy.rerank_mode=moments"], "kvpolicy.rerank_mode=moments has no effect with kvpolicy=quest"),
    (["kvpolicy=flexicache", "kvpolicy.unstable_fraction=1.0", "kvpolicy.host_kv_gib=5"],
     "kvpolicy.host_kv_gib=5 has no effect with kvpolicy=flexicache"),
    (["engine_profile=vllm_v1_cudagraph", "engine_profile.cuda_graphs=false", "engine_profile.graph_mixed=true"],
     "engine_profile.graph_mixed=true has no effect with engine_profile.cuda_graphs=false"),
    (["kvpolicy=streaming", "+kvpolicy.minmax_region=true"], "kvpolicy.minmax_region=true has no effect"),
    (["kvpolicy=head_split", "+kvpolicy.host_kv_gib=1"], "kvpolicy.host_kv_gib=1 has no effect with kvpolicy=head_split"),
    (["kvpolicy.page_tokens=999"], "kvpolicy.page_tokens=999 has no effect with kvpolicy=full"),
    (["cluster.pp_microbatches=4"], "cluster.pp_microbatches=4 is invalid: use null with cluster.pp=1"),
    (["engine_profile=vllm_v0_eager", "+engine_profile.graph_mixed=true"], "graph_mixed=true has no effect"),
    (["engine_profile=sglang", "engine_profile.graph_sizes=[8,0]"], "engine_profile.graph_sizes: the size 0 is invalid"),
    (["experiment=capacity_search", "engine_profile=sglang", "engine_profile.graph_sizes=5"], "is not a list"),
    # a KV policy's decodes always run through its cohort: fast_forward was accepted and recorded, never applied
    (["kvpolicy=flexicache", "backend.fast_forward=false"], "backend.fast_forward has no effect with a KV policy"),
    # a given unstable list is the unstable heads: the fraction was accepted and recorded, never read
    (["kvpolicy=flexicache", "kvpolicy.unstable_fraction=0.5", "+kvpolicy.unstable_heads=[[0,0]]"],
     "kvpolicy.unstable_fraction=0.5 has no effect with kvpolicy.unstable_heads given"),
])
def test_settings_that_nothing_reads_or_that_are_malformed_are_refused(overrides, message):
    register_configs()
    cfg = compose_run(overrides)
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_run(cfg, overrides)
        experiment_describer(cfg.experiment)(cfg)


def test_what_ran_names_the_profile_changes_the_pipeline_and_the_policys_settings():
    register_configs()
    describe = experiment_describer("serve_trace")
    ran = describe(compose_run(["engine_profile=trtllm", "engine_profile.cpu_fixed_s=0.002", "cluster.pp=2",
                                "cluster.pp_microbatches=3", "cluster.tp=2"]))
    assert ran["engine_profile"]["name"] == "trtllm" and ran["engine_profile"]["changed_from_shipped"] == ["cpu_fixed_s"]
    assert (ran["pp"], ran["pp_microbatches"]) == (2, 3)
    relabelled = describe(compose_run(["engine_profile=trtllm", "engine_profile.name=vllm_v0_eager"]))
    assert "cpu_per_seq_s" in relabelled["engine_profile"]["changed_from_shipped"]  # not vllm_v0_eager's values
    assert describe(compose_run(["engine_profile=sglang"]))["engine_profile"]["changed_from_shipped"] == []
    custom = describe(compose_run(["engine_profile=trtllm", "engine_profile.name=my_engine"]))["engine_profile"]
    assert custom["name"] == "my_engine" and custom["changed_from_shipped"] is None  # no shipped profile of that name
    assert describe(compose_run(["engine_profile=trtllm", "engine_profile.name=../kvpolicy/full"]))[
        "engine_profile"]["changed_from_shipped"] is None  # a name is never read as a path
    assert describe(compose_run(["kvpolicy=flexicache"]))["fast_forward"] is False  # its cohort, not spans
    assert describe(compose_run([]))["fast_forward"] is True
    given = describe(compose_run(["kvpolicy=flexicache", "+kvpolicy.unstable_heads=[[0,0]]"]))["kvpolicy"]
    assert given["unstable_heads"] == [[0, 0]] and "unstable_fraction" not in given
    quest = describe(compose_run(["kvpolicy=quest"]))["kvpolicy"]
    assert "rerank_mode" not in quest and "host_kv_gib" not in quest and quest["minmax_region"] is True
    search = experiment_describer("capacity_search")
    base = search(compose_run(["experiment=capacity_search"]))
    for change, key in (("engine_profile=vllm_v0_eager", "engine_profile"), ("cluster.pp=2", "pp"),
                        ("cluster.kv_gib=20", "kv_gib"), ("kvpolicy=quest", "kvpolicy")):
        assert search(compose_run(["experiment=capacity_search", change]))[key] != base[key], change


def test_a_group_set_to_null_is_refused_in_one_line(tmp_path):
    proc = run_cli(["engine_profile=null", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "engine_profile=null is not an option of engine_profile: leave engine_profile out" in proc.stderr
    sweep = run_cli(["-m", "engine_profile=null,sglang", "workload.limit=5", "sweep_name=n"], cwd=tmp_path)
    assert sweep.returncode == 2 and "1 of 2 runs of the sweep are invalid" in sweep.stderr
    assert "Traceback" not in sweep.stderr and not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("overrides", [
    ["kvpolicy=flexicache", "kvpolicy.unstable_fraction=1.0"],  # no OFFLOAD head: the group's host pool unread
    ["kvpolicy=flexicache_adaptive", "kvpolicy.min_offload_interval=100000"],
    ["engine_profile=vllm_v1_cudagraph", "engine_profile.cuda_graphs=false"],  # its graph settings unread
    ["engine_profile=vllm_v0_multistep", "engine_profile.cuda_graphs=false"],
    ["engine_profile=sglang", "engine_profile.graph_sizes=[1,2,4,8,{start:8,stop:64,step:8}]"],
])
def test_a_groups_own_defaults_that_a_change_leaves_unread_are_not_refused(overrides):
    register_configs()
    cfg = compose_run(overrides)
    check_run(cfg, overrides)
    ran = experiment_describer(cfg.experiment)(cfg)
    if "kvpolicy.unstable_fraction=1.0" in overrides:
        assert "host_kv_gib" not in ran["kvpolicy"] and "rerank_mode" not in ran["kvpolicy"]
    if "engine_profile.cuda_graphs=false" in overrides:
        assert ran["engine_profile"]["graph_sizes"] == [] or ran["engine_profile"]["graph_sizes"] == ()
