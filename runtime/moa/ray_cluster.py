"""The MoA worker pool on Ray: a local Ray started (and stopped) for the run, or an existing cluster.

One ExpertWorker actor per device: num_gpus=1 each where the cluster has GPUs, else a group of
threads_per_worker CPU threads (num_cpus). Ray missing or failing to start is a RayUnavailable naming the fix.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from tessera.runtime.moa.prompt_queue import PromptQueue
from tessera.runtime.moa.worker import ExpertWorker

OBJECT_STORE_BYTES = 80 * 2**20  # prompts and answers are small; keep the local Ray's footprint small
PROBE_TIMEOUT_S = 5.0  # ray.init retries an unreachable address for minutes: probe it first


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the local Ray / the cluster at ray_address did not start or answer."""


@dataclass
class WorkerPool:
    """The actors and what each runs on; started_local: this run started Ray and stops it."""

    actors: list
    infos: list[dict]
    started_local: bool
    uses_gpus: bool
    options: dict = field(default_factory=dict)
    queue: object = None  # the PromptQueue actor least_loaded dispatches from (started with the pool)


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("backend=runtime for experiment=mosaic runs its workers on Ray, which is not "
                             "installed: pip install ray==2.60.0 (pinned in pyproject.toml)") from None
    return ray


def probe_address(ray_address: str) -> None:
    """Fail fast when host:port of ray_address (GCS "host:6379" or Ray Client "ray://host:10001") does not accept
    a connection; "auto" and addresses without a port are left to ray.init."""
    host, _, port = ray_address.removeprefix("ray://").rpartition(":")
    if ray_address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise RayUnavailable(f"no Ray cluster answers at backend.runtime.ray_address={ray_address!r} ({err}); fix: "
                             "start one (ray start --head) and pass its address, or leave ray_address null for a "
                             "local Ray") from None


LOCAL_START_ATTEMPTS = 2  # Ray waits a fixed 30 s for its raylet to register: a loaded machine can miss it once


def _start_local(ray, num_cpus: int, device: str) -> None:
    """A fresh local Ray ("local": never a cluster another process left in /tmp/ray), retried once when the
    node times out during startup; the last failure propagates."""
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=None if device != "cpu" else 0,
                     include_dashboard=False, log_to_driver=False, object_store_memory=OBJECT_STORE_BYTES,
                     configure_logging=False)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception for the startup timeout
            ray.shutdown()
            if attempt == LOCAL_START_ATTEMPTS or "timed out during startup" not in str(err):
                raise


def start_workers(num_workers: int, threads_per_worker: int, device: str = "auto", ray_address: str | None = None,
                  dtype: str | None = None, max_num_seqs: int = 8, max_num_batched_tokens: int = 512,
                  seed: int = 0) -> WorkerPool:
    ray = _ray()
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local runs: no token authentication
        try:
            if ray_address:
                probe_address(ray_address)
                ray.init(address=ray_address, log_to_driver=False)
            else:
                _start_local(ray, num_workers * threads_per_worker, device)
                started = True
        except RayUnavailable:
            raise
        except Exception as err:  # Ray raises many types here (ConnectionError, RuntimeError, ValueError)
            where = f"the Ray cluster at backend.runtime.ray_address={ray_address!r}" if ray_address else "a local Ray"
            raise RayUnavailable(f"could not start or reach {where}: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''}; fix: check the address "
                                 "(ray status on the head node), or leave ray_address null for a local Ray") from None
    gpus = int(ray.cluster_resources().get("GPU", 0)) if device != "cpu" else 0
    if device.startswith("cuda") and gpus < num_workers:
        stop(started)
        raise RayUnavailable(f"backend.runtime.device={device} with backend.runtime.workers={num_workers}, but the "
                             f"Ray cluster has {gpus} GPU(s); fix: fewer workers or device=auto/cpu")
    uses_gpus = gpus >= num_workers
    options = {"num_gpus": 1, "num_cpus": 1} if uses_gpus else {"num_cpus": threads_per_worker}
    remote = ray.remote(max_restarts=0, max_task_retries=0)(ExpertWorker)
    actors = [remote.options(**options).remote(w, threads_per_worker, "cuda" if uses_gpus else "cpu", dtype,
                                               max_num_seqs, max_num_batched_tokens, seed)
              for w in range(num_workers)]
    queue = ray.remote(PromptQueue).options(num_cpus=0).remote()
    try:
        infos = ray.get([a.describe.remote() for a in actors], timeout=300)
        ray.get(queue.remaining.remote(), timeout=300)
    except Exception as err:
        stop(started)
        raise RayUnavailable(f"the {num_workers} worker actors did not start ({type(err).__name__}: {err}); fix: "
                             "check that the Ray cluster has num_cpus >= workers x threads_per_worker") from None
    return WorkerPool(actors, infos, started, uses_gpus, options, queue)


def stop(started_local: bool) -> None:
    """Shut the local Ray down if this run started it (a cluster is left running)."""
    import ray

    if started_local and ray.is_initialized():
        ray.shutdown()


def stop_workers(pool: WorkerPool) -> None:
    import ray

    for actor in [*pool.actors, pool.queue]:
        try:
            ray.kill(actor)
        except Exception:  # already dead
            pass
    stop(pool.started_local)
