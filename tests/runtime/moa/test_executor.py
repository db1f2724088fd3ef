"""The MoA worker pool on a local Ray with the shipped tiny model: static phases, the shared queue, a barrier,
and a worker actor killed mid-stage (its prompts re-dispatched to a survivor, or WorkerLost naming it)."""
import os

import pytest

ray = pytest.importorskip("ray")

from tessera.paths import REPO_ROOT  # noqa: E402
from tessera.runtime.moa.executor import Phase, StageProgram, WorkerLost, execute_stage  # noqa: E402
from tessera.runtime.moa.prompts import ReplicaSpec, WorkPrompt  # noqa: E402
from tessera.runtime.moa.ray_cluster import start_workers, stop_workers  # noqa: E402

TINY = str(REPO_ROOT / "models" / "tessera-tiny-byte")


@pytest.fixture(scope="module")
def pool():
    """Three worker actors on one local Ray; the fault tests kill worker 2, then worker 1 (tests run in order)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    workers = start_workers(3, 1, "cpu", max_num_seqs=4, max_num_batched_tokens=256)
    yield workers
    stop_workers(workers)


def spec(expert):
    return ReplicaSpec(expert, TINY, 0.01)


def prompts(expert, ids, max_tokens=12):
    return [WorkPrompt(i, expert, tuple(b"Question: what is 2 + 3?\n"), max_tokens, 0.0, i) for i in ids]


def test_static_phases_and_the_shared_queue(pool):
    program = StageProgram({0: [Phase([spec("a"), spec("b")], prompts("a", range(3)) + prompts("b", range(3, 5)))],
                            1: [Phase([spec("c")], prompts("c", range(5, 8)))]})
    out = execute_stage(pool, program)
    assert sorted(s.request_id for s in out.served) == list(range(8))
    assert {(s.expert, s.worker) for s in out.served} == {("a", 0), ("b", 0), ("c", 1)}
    assert all(0 <= sp.start_s <= sp.ready_s <= sp.end_s <= out.end_s for sp in out.spans)
    assert all(s.output_tokens >= 1 and s.start_s <= s.first_token_s <= s.finish_s for s in out.served)
    queued = StageProgram({0: [Phase([spec("a")])], 1: [Phase([spec("a")])]}, queue=prompts("a", range(10)))
    out = execute_stage(pool, queued)
    assert sorted(s.request_id for s in out.served) == list(range(10))  # each once, whoever pulled it
    assert out.steps == []  # steps are timed only when the program asks


def test_a_recorded_stage_returns_every_engine_step_per_worker_and_expert(pool):
    from tessera.cost.calibration import STEP_COLUMNS
    from tessera.experiments.calibrate_runtime_steps import StepRecorder

    program = StageProgram({0: [Phase([spec("a"), spec("b")], prompts("a", range(2), 6) + prompts("b", [2], 6))],
                            1: [Phase([spec("c")], prompts("c", range(3, 6), 6))]}, recorder=StepRecorder)
    out = execute_stage(pool, program)
    by = {}
    for row in out.steps:
        assert set(STEP_COLUMNS) <= set(row) and row["time_s"] > 0
        by.setdefault((row["worker"], row["expert"]), []).append(row)
    assert set(by) == {(0, "a"), (0, "b"), (1, "c")}
    for (_, expert), rows in by.items():  # every token of every request is in some recorded step
        served = [s for s in out.served if s.expert == expert]
        assert sum(r["prefill_tokens"] for r in rows) >= sum(s.prompt_tokens for s in served)
        assert sum(r["decode_seqs"] for r in rows) == sum(s.output_tokens - 1 for s in served)


def test_a_killed_worker_hands_its_prompts_to_a_survivor_with_the_expert(pool):
    program = StageProgram({0: [Phase([spec("a")], prompts("a", range(4), 24))],
                            2: [Phase([spec("a")], prompts("a", range(4, 8), 24))]})
    out = execute_stage(pool, program, on_dispatched=lambda: ray.kill(pool.actors[2]))
    assert out.lost_workers == [2]
    assert out.redispatched == [{"dead": 2, "survivor": 0, "expert": "a", "prompts": 4}]
    assert sorted(s.request_id for s in out.served) == list(range(8))
    assert {s.worker for s in out.served} == {0}


def test_a_killed_worker_whose_expert_nobody_else_holds_stops_the_stage(pool):
    program = StageProgram({0: [Phase([spec("a")], prompts("a", range(2)))],
                            1: [Phase([spec("b")], prompts("b", range(2, 6), 24))]}, barrier=True)
    with pytest.raises(WorkerLost, match=r"worker 1 .*expert\(s\) \['b'\]"):
        execute_stage(pool, program, on_dispatched=lambda: ray.kill(pool.actors[1]))
