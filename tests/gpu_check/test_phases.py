"""Phase selection (names or the issue's letters a-d; env always first) and the exit-status bits."""
import pytest

from tessera.gpu_check.phases import PHASES, select


def test_letters_names_and_order():
    assert [p.name for p in select("c,a")] == ["env", "kernels", "bench"]
    assert [p.name for p in select("engine,d")] == ["env", "engine", "calibration"]
    assert [p.name for p in select(None)] == [p.name for p in PHASES]
    with pytest.raises(ValueError, match="a=kernels"):
        select("x")


def test_bits_are_distinct_powers_of_two_and_the_budget_is_480_s():
    bits = [p.bit for p in PHASES]
    assert len(set(bits)) == len(bits) and all(b & (b - 1) == 0 for b in bits)
    assert sum(p.nominal_s for p in PHASES) == 480
