"""Bad config values, composed as the CLI composes them, are ConfigError/TraceError naming the key (exit code 2).

`validate` does what `tessera` does before simulating: pick the experiment, resolve the config, build the
workload and the cluster. Overrides Hydra itself rejects go through run.precheck_overrides (one line, exit 2).
Hypothesis sets random values on engine and cluster keys: resolved, or one of those errors, nothing else.
"""
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings, strategies as st
from omegaconf.errors import OmegaConfBaseException

from tessera.experiments.backends.sim import run_sim
from tessera.experiments.config import ConfigError, register_configs
from tessera.experiments.registry import experiment_runner
from tessera.experiments.resolve import resolve
from tessera.experiments.run import precheck_overrides
from tessera.experiments.serve_trace import workload_requests
from tessera.paths import REPO_ROOT
from tessera.workload import TraceError
from tests.bad_inputs.corpus import refused


def compose_config(overrides):
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="bad_inputs"):
        return compose(config_name="config", overrides=list(overrides))


def validate(cfg) -> None:
    """serve_trace up to the simulation: the checks a run makes before it starts."""
    experiment_runner(cfg.experiment)
    spec = resolve(cfg)
    workload_requests(spec)  # serve_trace's own workload step (context limit included)
    run_sim(spec, [])


NAN = "nan"
SHAREGPT = "workload=sharegpt_poisson"

# (id, overrides, needles): ConfigError (or TraceError) naming the key
CASES = [
    ("workers-zero", ["cluster.num_workers=0"], ["cluster.num_workers"]),
    ("workers-negative", ["cluster.num_workers=-1"], ["cluster.num_workers"]),
    ("tp-three", ["cluster.tp=3"], ["cluster.tp=3"]),
    ("tp-zero", ["cluster.tp=0"], ["cluster.tp=0"]),
    ("router-unknown", ["cluster.router=random"], ["cluster.router"]),
    ("gpu-unknown", ["cluster.gpu=TPU"], ["cluster.gpu"]),
    ("gpu-null", ["cluster.gpu=null"], ["cluster.gpu"]),
    ("calibration-missing", ["cluster.calibration=nowhere"], ["cluster.calibration"]),
    ("kv-gib-zero", ["cluster.kv_gib=0"], ["cluster.kv_gib"]),
    ("kv-gib-negative", ["cluster.kv_gib=-1"], ["cluster.kv_gib"]),
    ("kv-gib-nan", [f"cluster.kv_gib={NAN}"], ["cluster.kv_gib"]),
    ("kv-gib-no-block", ["cluster.kv_gib=0.00000001"], ["cluster.kv_gib", "holds no KV block"]),
    ("max-num-seqs-zero", ["engine.max_num_seqs=0"], ["engine.max_num_seqs"]),
    ("block-size-zero", ["engine.block_size=0"], ["engine.block_size"]),
    ("budget-negative", ["engine.max_num_batched_tokens=-1"], ["engine.max_num_batched_tokens"]),
    ("watermark-above-one", ["engine.watermark=1.5"], ["engine.watermark"]),
    ("watermark-nan", [f"engine.watermark={NAN}"], ["engine.watermark"]),
    ("utilisation-zero", ["engine.gpu_memory_utilization=0"], ["engine.gpu_memory_utilization"]),
    ("utilisation-nan", [f"engine.gpu_memory_utilization={NAN}"], ["engine.gpu_memory_utilization"]),
    ("activation-negative", ["engine.activation_reserve_gib=-1"], ["engine.activation_reserve_gib"]),
    ("activation-nan", [f"engine.activation_reserve_gib={NAN}"], ["engine.activation_reserve_gib"]),
    ("activation-fills-gpu", ["engine.activation_reserve_gib=100"], ["activations", "bigger GPU"]),
    ("model-too-big-for-gpu", ["model=llama2_70b"], ["weights", "tensor parallelism"]),
    ("backend-unknown", ["backend.kind=gpu"], ["backend.kind"]),
    ("cost-kind-unknown", ["backend.cost.kind=magic"], ["backend.cost.kind"]),
    ("model-unknown", ["model.name=Llama-9"], ["model.name"]),
    ("model-path-missing", ["model.path=nowhere"], ["model.path"]),
    ("trace-limit-zero", ["workload.limit=0"], ["workload", "limit"]),
    ("trace-limit-string", ["workload.limit=abc"], ["workload", "limit", "'abc'"]),
    ("trace-speedup-negative", ["workload.speedup=-1"], ["workload", "speedup"]),
    ("trace-speedup-inf", ["workload.speedup=inf"], ["workload", "speedup", "finite"]),
    ("trace-name-missing-file", ["workload.name=/nonexistent/trace.csv"], ["/nonexistent/trace.csv"]),
    ("trace-name-directory", ["workload.name=/tmp"], ["'/tmp' is a directory"]),
    ("trace-unknown-key", ["+workload.bogus=1"], ["'bogus'"]),
    ("rate-negative", [SHAREGPT, "workload.arrival.rate=-2"], ["workload.arrival", "rate"]),
    ("rate-string", [SHAREGPT, "workload.arrival.rate=abc"], ["workload.arrival", "rate", "'abc'"]),
    ("rate-nan", [SHAREGPT, f"workload.arrival.rate={NAN}"], ["workload.arrival", "rate", "finite"]),
    ("num-requests-zero", [SHAREGPT, "workload.num_requests=0"], ["num_requests"]),
    ("arrival-kind-unknown", [SHAREGPT, "workload.arrival.kind=weird"], ["workload.arrival.kind", "'weird'"]),
    ("lengths-kind-unknown", [SHAREGPT, "workload.lengths.kind=weird"], ["workload.lengths.kind"]),
    ("cv-negative", ["workload=servegen_r1_gamma", "workload.arrival.cv=-1"], ["workload.arrival", "cv"]),
    ("seed-negative", [SHAREGPT, "seed=-1"], ["seed"]),
    ("fixed-lengths-huge", ["workload=long_context", "workload.lengths.prompt_tokens=[1,100000000000]"],
     ["prompt_tokens[1]", "10,000,000"]),
    ("kvpolicy-unknown", ["kvpolicy.name=nope"], ["kvpolicy"]),
]

# (id, overrides, needles): Hydra/OmegaConf refuse them while composing; run.py prints one line, exit 2
PRECHECK = [
    ("max-num-seqs-word", ["engine.max_num_seqs=abc"], ["engine.max_num_seqs"]),
    ("chunked-prefill-word", ["engine.chunked_prefill=maybe"], ["engine.chunked_prefill"]),
    ("workers-fraction", ["cluster.num_workers=1.5"], ["cluster.num_workers"]),
    ("group-unknown", ["cluster=nope"], ["cluster", "nope"]),
    ("experiment-unknown", ["experiment=nope"], ["experiment", "nope"]),
    # a field the profile's file leaves at its default: the fix is the + prefix (was Hydra's "not in struct")
    ("profile-field-unlisted", ["engine_profile=vllm_v1_cudagraph", "engine_profile.allreduce_floor_s=2e-5"],
     ["engine_profile.allreduce_floor_s", "+engine_profile.allreduce_floor_s="]),
    ("profile-field-unknown", ["engine_profile=sglang", "engine_profile.bogus=1"],
     ["engine_profile.bogus is not an engine-profile field", "allreduce_floor_s"]),
]
CASES += PRECHECK


@pytest.mark.parametrize("overrides, needles", [c[1:] for c in CASES if c not in PRECHECK],
                         ids=[c[0] for c in CASES if c not in PRECHECK])
def test_bad_config_value_is_a_config_error_naming_the_key(overrides, needles):
    cfg = compose_config(overrides)
    refused((ConfigError, TraceError), lambda: validate(cfg), *needles)


@pytest.mark.parametrize("overrides, needles", [c[1:] for c in PRECHECK], ids=[c[0] for c in PRECHECK])
def test_overrides_hydra_refuses_are_one_line(overrides, needles):
    line = precheck_overrides(overrides)
    assert line is not None and "\n" not in line and "Traceback" not in line
    assert all(n in line for n in needles), line


def reals(low, high):
    return st.one_of(st.floats(low, high), st.sampled_from([float("nan"), float("inf"), -float("inf")]))


KEYS = {"engine.max_num_seqs": st.integers(-3, 300), "engine.block_size": st.integers(-3, 64),
        "engine.max_num_batched_tokens": st.integers(-10, 10**6), "engine.watermark": reals(-1, 2),
        "engine.gpu_memory_utilization": reals(-1, 2), "engine.activation_reserve_gib": reals(-5, 200),
        "cluster.kv_gib": reals(-1, 1e4), "cluster.tp": st.integers(-2, 16), "cluster.num_workers": st.integers(-2, 4)}


@pytest.fixture(scope="module")
def base_cfg():
    return compose_config(["workload.limit=50"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), key=st.sampled_from(sorted(KEYS)))
def test_random_engine_and_cluster_values_resolve_or_are_config_errors(base_cfg, data, key):
    cfg = base_cfg.copy()
    value = data.draw(KEYS[key])
    group, name = key.split(".")
    try:
        cfg[group][name] = value
    except OmegaConfBaseException:  # a type OmegaConf refuses: the CLI's precheck turns it into one line
        return
    try:
        validate(cfg)
    except (ConfigError, TraceError) as error:
        assert name in str(error) or "GPU" in str(error) or "KV" in str(error), str(error)
