"""A small FlexiCache run's per-iteration and KV-copy records, the input of the trace tests."""
import pytest

from tessera.cost import make_cost_model
from tessera.hardware import gpu, host_link
from tessera.memory import MemoryConfig
from tessera.models import model
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.sim.batch_log import enable_batch_log
from tessera.sim.kv_setup import KVSetup, KVSimConfig
from tessera.sim.records import batch_frame, transfer_frame
from tessera.types import Request, WorkerSpec

LLAMA = model("Llama-3.1-8B")
H100 = gpu("H100-NVL-94GB")


@pytest.fixture(scope="module")
def frames():
    """(batches, transfers) of 6 requests on one H100 NVL with FlexiCache: iterations and H2D / D2H copies."""
    kv = KVSetup("flexicache", {}, KVSimConfig(rerank_mode="sampled"))
    cost = make_cost_model("roofline", LLAMA, H100, 1)
    cluster = Cluster([WorkerSpec(0, H100, LLAMA, 1)], lambda s: cost, SchedulerConfig(), MemoryConfig(),
                      make_router("round_robin"), host_link=host_link(H100), kv=kv)
    enable_batch_log(cluster)
    run = cluster.run([Request(i, 0.01 * i, 3000 + 500 * i, 60) for i in range(6)])
    return batch_frame(run), transfer_frame(run)
