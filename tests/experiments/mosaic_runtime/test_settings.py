"""params.runtime.repeats: read from the config (3 by default, 1 in quick mode) and refused by name when not a
whole number >= 1."""
import pytest

from tessera.experiments.config import ConfigError
from tessera.experiments.mosaic import params_with_quick
from tessera.experiments.mosaic_runtime.settings import read_settings

needs_model = pytest.mark.usefixtures("smollm2")  # the settings check that the checkpoint folder exists
RUNTIME = ["experiment=mosaic", "backend=runtime"]


@needs_model
def test_rounds_default_to_three_and_to_one_in_quick_mode(composed):
    cfg = composed(RUNTIME)
    assert read_settings(cfg, params_with_quick(cfg)).repeats == 3
    cfg = composed([*RUNTIME, "params.quick=true"])
    assert read_settings(cfg, params_with_quick(cfg)).repeats == 1


@needs_model
@pytest.mark.parametrize("value", ["0", "-1", "1.5", "true"])
def test_a_bad_round_count_is_refused_by_name(composed, value):
    cfg = composed([*RUNTIME, f"params.runtime.repeats={value}"])
    with pytest.raises(ConfigError, match=r"params\.runtime\.repeats=.*whole number >= 1"):
        read_settings(cfg, params_with_quick(cfg))
