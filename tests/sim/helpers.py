"""Shared by the simulator's equivalence tests: random small workloads, a run with every record, exact comparison."""
import pandas as pd
from hypothesis import strategies as st

from tessera.sim import kv_usage_frame, request_frame, worker_frame
from tessera.sim.batch_log import enable_batch_log
from tessera.sim.records import batch_frame

requests_strategy = st.lists(
    st.tuples(st.floats(0, 0.5), st.integers(1, 400), st.integers(1, 120)), min_size=1, max_size=40)


def recorded_run(cluster, requests, on_finish=None):
    """Run with the batch log on: ((request, worker, KV-usage, batch) frames, the ClusterRun)."""
    enable_batch_log(cluster)
    result = cluster.run(requests, on_finish=on_finish)
    return (request_frame(result), worker_frame(result), kv_usage_frame(result), batch_frame(result)), result


def assert_same(a, b):
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
