"""cluster.pp and cluster.pp_microbatches: checked by name, carried to every worker."""
import pytest

from tessera.experiments.backends.sim import run_sim
from tessera.experiments.config import ConfigError
from tessera.experiments.resolve import resolve


@pytest.mark.parametrize("overrides,needle", [
    (["cluster.tp=4", "cluster.pp=4"], "cluster.pp=4 is invalid"),
    (["cluster.pp=0"], "cluster.pp=0 is invalid"),
    (["cluster.pp=2", "cluster.pp_microbatches=0"], "cluster.pp_microbatches=0 is invalid"),
    (["backend=runtime", "cluster.pp=2"], "backend=runtime"),
])
def test_bad_pipeline_settings_are_config_errors(composed, overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve(composed(overrides))


def test_pipeline_settings_reach_the_workers(composed):
    spec = resolve(composed(["cluster.tp=2", "cluster.pp=4", "cluster.pp_microbatches=8"]))
    assert (spec.workers[0].tp, spec.workers[0].pp, spec.workers[0].pp_microbatches) == (2, 4, 8)


def test_kv_policies_are_refused_with_pipeline_stages(composed):
    spec = resolve(composed(["kvpolicy=quest", "cluster.pp=2"]))
    with pytest.raises(ConfigError, match="kvpolicy=full with cluster.pp > 1"):
        run_sim(spec, [])
