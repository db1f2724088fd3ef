"""The engine phase's comparisons: first divergence, agreement before it, log-prob gaps."""
from tessera.gpu_check.engine_runs import agreement, first_divergence, logprob_gap


def test_first_divergence_and_agreement():
    a = [[1, 2, 3, 4], [5, 6]]
    assert first_divergence(a, a) is None and agreement(a, a) == 1.0
    b = [[1, 2, 9, 4], [5, 6]]
    assert first_divergence(a, b) == (0, 2)
    assert agreement(a, b) == (2 + 2) / 6  # tokens after a divergence do not count, even when equal again
    assert first_divergence([[1, 2]], [[1]]) == (0, 1)


def test_logprob_gap():
    assert logprob_gap([[-1.0, -2.0]], [[-1.5, -2.0]]) == (0.25, 0.5)
    assert logprob_gap([[]], [[]]) == (0.0, 0.0)
