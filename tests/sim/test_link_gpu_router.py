"""Links queue transfers per direction; GPUs refuse over-reservation; routers pick as documented."""
import pytest
import simpy

from tessera.sim.gpu import GPU
from tessera.sim.link import Link
from tessera.sim.router import LeastOutstandingTokensRouter, RoundRobinRouter, make_router
from tests.sim.fakes import PCIE, TINY_GPU


def test_transfers_in_one_direction_queue_and_the_other_direction_is_independent():
    env = simpy.Environment()
    link = Link(env, PCIE)  # 1 GB/s, 10 us latency
    finish = {}

    def move(name, nbytes, direction):
        finish[name] = yield env.process(link.transfer(nbytes, direction))

    for name, direction in (("a", "h2d"), ("b", "h2d"), ("c", "d2h")):
        env.process(move(name, 1e6, direction))
    env.run()
    one = 1e-5 + 1e-3
    assert finish["a"] == pytest.approx(one)
    assert finish["b"] == pytest.approx(2 * one)  # waited for a
    assert finish["c"] == pytest.approx(one)  # other direction
    assert link.bytes_moved == {"h2d": 2e6, "d2h": 1e6}


def test_link_rejects_bad_direction():
    env = simpy.Environment()
    with pytest.raises(ValueError, match="direction"):
        next(Link(env, PCIE).transfer(10, "sideways"))


def test_gpu_reservation_error_names_what_and_how_much():
    gpu = GPU(simpy.Environment(), 0, TINY_GPU)
    gpu.reserve("weights", TINY_GPU.hbm_bytes * 0.9)
    with pytest.raises(MemoryError, match="KV pool needs"):
        gpu.reserve("KV pool", TINY_GPU.hbm_bytes * 0.2)
    gpu.release("weights")
    gpu.reserve("KV pool", TINY_GPU.hbm_bytes * 0.2)


class _W:
    def __init__(self, wid, outstanding):
        self.worker_id, self.outstanding_tokens = wid, outstanding


def test_routers():
    ws = [_W(0, 50), _W(1, 10), _W(2, 10)]
    rr = RoundRobinRouter()
    assert [rr.pick(None, ws).worker_id for _ in range(4)] == [0, 1, 2, 0]
    assert LeastOutstandingTokensRouter().pick(None, ws).worker_id == 1
    with pytest.raises(ValueError, match="cluster.router"):
        make_router("random")
