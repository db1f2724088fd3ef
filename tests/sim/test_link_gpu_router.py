"""Links queue transfers per direction (quiet copies counted as their events would count them); GPUs refuse
over-reservation; routers pick as documented."""
import pytest
import simpy
from hypothesis import given, settings, strategies as st

from tessera.sim.gpu import GPU
from tessera.sim import link as link_module
from tessera.sim.link import Link
from tessera.sim.router import LeastOutstandingTokensRouter, RoundRobinRouter, make_router
from tessera.sim.batch_log import TransferLog
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


def copies_run(copies, quiet: bool, stop: float | None):
    """Copies (start time, bytes, direction, quiet?) on one link; quiet ones through start_quiet when `quiet`, every
    one through start() otherwise (the reference: one landing event each). Returns what the link counted (after a
    settle at `stop`, or once every event ran) and each copy's end time and landing place."""
    env = simpy.Environment()
    link = Link(env, PCIE)
    link.log = TransferLog()
    ends, landed = [], []

    def issue(at, nbytes, direction, is_quiet):
        yield env.timeout(at)
        if quiet and is_quiet:
            ends.append(link.start_quiet(nbytes, direction))
        else:
            ends.append(link.start(nbytes, direction, lambda: landed.append(env.now)))

    for copy in copies:
        env.process(issue(*copy))
    env.run(until=stop)
    link.settle(env.now if stop is not None else float("inf"))
    log = link.log
    return link.bytes_moved, link.busy_s, (log.t_s, log.duration_s, log.direction, log.num_bytes), sorted(ends)


@settings(max_examples=80, deadline=None)
@given(copies=st.lists(st.tuples(st.sampled_from([0.0, 5e-4, 1e-3, 2e-3]), st.sampled_from([0.0, 1e5, 1e6, 3e6]),
                                 st.sampled_from(["h2d", "d2h"]), st.booleans()), min_size=1, max_size=12),
       stop=st.sampled_from([None, 1.013e-3, 3.007e-3, 4.031e-3]))  # no copy ends at a stop (SimPy stops before)
def test_quiet_copies_count_as_their_landing_events_would(copies, stop):
    # bytes, busy time and the log (in landing order, across both directions, ties by start order) match the
    # reference, at the end of a run or stopped mid-way (copies landing after the stop are not counted), also when
    # the quiet copies that landed are counted as more start (a batch of 2 instead of hundreds)
    reference = copies_run(copies, False, stop)
    assert copies_run(copies, True, stop) == reference
    batch = link_module.QUIET_BATCH
    link_module.QUIET_BATCH = 2
    try:
        assert copies_run(copies, True, stop) == reference
    finally:
        link_module.QUIET_BATCH = batch


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
