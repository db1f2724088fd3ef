"""Quest's MinMax page score bounds every key of the page; top-K from scores keeps the current page."""
import numpy as np

from tessera.kvcache import minmax_page_scores, topk_from_scores


def test_minmax_score_upper_bounds_every_query_key_product():
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((10, 16, 8))  # pages, tokens, d
    queries = rng.standard_normal((4, 8))  # GQA group of 4 query heads
    scores = minmax_page_scores(queries, keys.min(1), keys.max(1))
    exact = np.einsum("gd,ptd->gpt", queries, keys).max(-1).max(0)
    assert scores.shape == (10,) and np.all(scores >= exact - 1e-9)


def test_topk_forces_the_current_page_and_pads_short_contexts():
    scores = np.arange(20, dtype=float)[None].repeat(2, 0)
    scores[:, 19] = -1e9
    top = topk_from_scores(scores, 4, 20)
    assert top[0, 0] == 19 and set(top[0]) == {19, 18, 17, 16}
    short = topk_from_scores(scores, 4, 3)
    assert set(short[0]) == {0, 1, 2, -1}
