"""A pipelined worker in the cluster: tp x pp GPUs, each holding one stage's weights and KV."""
import pytest

from tessera.cost.pipeline import stage_model
from tessera.memory import MemoryConfig, kv_bytes_per_token_per_gpu
from tessera.models import model
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.hardware import gpu
from tessera.types import Request, WorkerSpec
from tests.sim.fakes import LinearCost


def test_a_pipelined_worker_spreads_the_model_over_tp_x_pp_gpus():
    llama70, h100 = model("Llama-2-70B"), gpu("H100-SXM-80GB")
    memory = MemoryConfig(0.9, 2.0)
    specs = [WorkerSpec(0, h100, llama70, tp=2, pp=4)]
    cluster = Cluster(specs, lambda s: LinearCost(), SchedulerConfig(), memory, make_router("round_robin"))
    assert len(cluster.gpus) == 8
    stage = stage_model(llama70, 4)
    for g in cluster.gpus.values():
        assert g.reserved["Llama-2-70B (worker 0) weights"] == pytest.approx(stage.weight_bytes / 2)
    kv_per_gpu = cluster.gpus[0].reserved["Llama-2-70B (worker 0) KV cache"]
    blocks = int(kv_per_gpu // (16 * kv_bytes_per_token_per_gpu(stage, 2)))
    assert cluster.workers[0].pool.num_blocks == blocks
    run = cluster.run([Request(0, 0.0, 100, 5)])
    assert run.seqs[0].status == "finished"


def test_a_model_too_big_for_tp_fits_with_pipeline_stages():
    llama70, h100 = model("Llama-2-70B"), gpu("H100-SXM-80GB")
    memory = MemoryConfig(0.9, 2.0)
    with pytest.raises(MemoryError):
        Cluster([WorkerSpec(0, h100, llama70, tp=1)], lambda s: LinearCost(), SchedulerConfig(), memory,
                make_router("round_robin"))
    Cluster([WorkerSpec(0, h100, llama70, tp=1, pp=2)], lambda s: LinearCost(), SchedulerConfig(), memory,
            make_router("round_robin"))
