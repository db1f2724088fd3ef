"""The moment tables' on-disk cache: an entry reads back exactly what was drawn, a bad entry is drawn again, the
source of the drawing code is part of an entry's name, and TESSERA_CACHE_DIR=off keeps nothing."""
import numpy as np
import pytest

from tessera.kvcache import table_cache
from tessera.kvcache.rank_moments import STATS, RankSchedule, _table, table
from tessera.sim.kv_setup import truth_head_model
from tessera.models import model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_CACHE_DIR", str(tmp_path))
    return tmp_path / "rank_moments"


def counting_draw(calls: list):
    def draw():
        calls.append(1)
        return {"a": np.arange(6.0).reshape(2, 3) / 7, "b": np.full((2, 3), 1e-300), "scratch": np.zeros(2)}
    return draw


def test_an_entry_reads_back_what_was_drawn(cache):
    calls = []
    first = table_cache.cached_arrays("key", ("a", "b"), counting_draw(calls))
    again = table_cache.cached_arrays("key", ("a", "b"), counting_draw(calls))
    assert len(calls) == 1 and len(list(cache.glob("*.npy"))) == 1
    assert set(again) == {"a", "b"}
    for name in ("a", "b"):
        assert again[name].dtype == first[name].dtype and np.array_equal(again[name], first[name])
    table_cache.cached_arrays("other key", ("a", "b"), counting_draw(calls))
    assert len(calls) == 2 and len(list(cache.glob("*.npy"))) == 2


def test_a_bad_entry_is_drawn_again_and_rewritten(cache):
    calls = []
    table_cache.cached_arrays("key", ("a",), counting_draw(calls))
    (entry,) = cache.glob("*.npy")
    entry.write_bytes(b"not an array")
    got = table_cache.cached_arrays("key", ("a",), counting_draw(calls))
    assert len(calls) == 2 and np.array_equal(got["a"], np.arange(6.0).reshape(2, 3) / 7)
    table_cache.cached_arrays("key", ("a",), counting_draw(calls))
    assert len(calls) == 2  # rewritten whole
    assert not list(cache.glob(".tmp-*"))


def test_an_edit_to_the_drawing_code_misses_old_entries(cache, monkeypatch):
    calls = []
    table_cache.cached_arrays("key", ("a",), counting_draw(calls))
    monkeypatch.setattr(table_cache, "code_digest", lambda: "edited")
    table_cache.cached_arrays("key", ("a",), counting_draw(calls))
    assert len(calls) == 2


@pytest.mark.parametrize("value", ["off", "", "0"])
def test_off_keeps_nothing(tmp_path, monkeypatch, value):
    monkeypatch.setenv("TESSERA_CACHE_DIR", value)
    monkeypatch.chdir(tmp_path)
    calls = []
    table_cache.cached_arrays("key", ("a",), counting_draw(calls))
    table_cache.cached_arrays("key", ("a",), counting_draw(calls))
    assert len(calls) == 2 and table_cache.cache_dir() is None and not list(tmp_path.rglob("*.npy"))


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("TESSERA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert table_cache.cache_dir() == tmp_path / "tessera" / "rank_moments"


def test_a_cached_table_equals_one_drawn_in_memory(cache, monkeypatch):
    heads = truth_head_model(model("Llama-3.1-8B"))
    schedule = RankSchedule.of(16, 16, 1, 10_003)

    def node(i):
        _table.cache_clear()
        return table(heads.params, 64, schedule, 8192, heads.seed).node(i)

    stored = node(7)  # drawn, written
    assert len(list(cache.glob("*.npy"))) == 1
    read = node(7)  # read back
    monkeypatch.setenv("TESSERA_CACHE_DIR", "off")
    drawn = node(7)
    _table.cache_clear()
    for name in STATS:
        assert np.array_equal(read[name], drawn[name]) and np.array_equal(stored[name], drawn[name])
