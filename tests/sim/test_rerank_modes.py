"""kvpolicy.rerank_mode: the sampled (counts) and page-id reranks give the same per-request PCIe bytes, reloads
and stall time in distribution when the same FlexiCache workload is simulated over many request sets; the moments
mode (request totals, approximate) agrees within the same tolerances."""
import numpy as np
import pytest

from tessera.cost import make_cost_model
from tessera.hardware import gpu, host_link
from tessera.memory import MemoryConfig
from tessera.models import model
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.sim.kv_setup import KVSetup, KVSimConfig
from tessera.types import Request, WorkerSpec

LLAMA = model("Llama-3.1-8B")
H100 = gpu("H100-NVL-94GB")
SEEDS = range(5)


def requests(seed: int, n: int = 16) -> list[Request]:
    """A burst of n long-prompt requests; each seed is another set of request ids (other head behaviours)."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(3000, 8000, n)
    return [Request(1000 * seed + i, 0.0, int(p), 150) for i, p in enumerate(prompts)]


def per_request_stats(mode: str) -> np.ndarray:
    """[requests x (h2d bytes, d2h bytes, reloads, stall s)] over every seed."""
    kv = KVSetup("flexicache", {}, KVSimConfig(rerank_mode=mode))
    spec = WorkerSpec(worker_id=0, gpu=H100, model=LLAMA, tp=1)
    cost = make_cost_model("roofline", LLAMA, H100, 1)
    rows = []
    for seed in SEEDS:
        cluster = Cluster([spec], lambda s: cost, SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=16384),
                          MemoryConfig(), make_router("round_robin"), host_link=host_link(H100), kv=kv)
        run = cluster.run(requests(seed))
        stats = run.workers[0].kv.request_stats()
        rows += [(s["h2d_bytes"], s["d2h_bytes"], s["num_reloads"], s["stall_s"]) for s in stats.values()]
    return np.array(rows, dtype=float)


@pytest.fixture(scope="module")
def page_stats() -> np.ndarray:
    return per_request_stats("pages")


@pytest.mark.parametrize("mode", ["sampled", "moments"])
def test_count_reranks_agree_with_page_reranks_per_request(mode, page_stats):
    pages, counts = page_stats, per_request_stats(mode)
    assert pages.shape == counts.shape
    assert counts[:, 1].tolist() == pages[:, 1].tolist()  # D2H: every full page once, no sampling involved
    assert counts[:, 2].tolist() == pages[:, 2].tolist()  # reloads: every rerank of a long request fetches
    for col in (0, 3):  # H2D bytes, stall time
        assert counts[:, col].mean() == pytest.approx(pages[:, col].mean(), rel=0.02)
        for q in (0.1, 0.5, 0.9):
            assert np.quantile(counts[:, col], q) == pytest.approx(np.quantile(pages[:, col], q), rel=0.04)


def test_rerank_mode_is_validated():
    with pytest.raises(ValueError, match="kvpolicy.rerank_mode='ids' is invalid"):
        KVSimConfig(rerank_mode="ids")


@pytest.mark.parametrize("mode", ["sampled", "moments"])
def test_count_modes_are_deterministic(mode):
    # sampled: reranks drawn ahead for the whole batch from the manager's seeded stream; moments: each request's
    # totals from its own stream and tables seeded from the model: same workload, same results
    first, again = per_request_stats(mode), per_request_stats(mode)
    assert first.tolist() == again.tolist()
