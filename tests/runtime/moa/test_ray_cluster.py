"""Starting a local Ray: a node that times out during startup (Ray's fixed 30 s raylet wait, missed on a loaded
machine) is retried once; other failures and a second timeout propagate."""
import pytest

from tessera.runtime.moa.ray_cluster import _start_local

TIMEOUT = "The current node timed out during startup. This could happen because some of the raylet failed."


class FakeRay:
    def __init__(self, failures):
        self.failures, self.inits, self.shutdowns = list(failures), 0, 0

    def init(self, **kwargs):
        self.inits += 1
        assert kwargs["address"] == "local" and kwargs["num_cpus"] == 2
        if self.failures:
            raise self.failures.pop(0)

    def shutdown(self):
        self.shutdowns += 1


def test_a_startup_timeout_is_retried_once():
    ray = FakeRay([Exception(TIMEOUT)])
    _start_local(ray, 2, "cpu")
    assert (ray.inits, ray.shutdowns) == (2, 1)


def test_a_second_timeout_propagates():
    ray = FakeRay([Exception(TIMEOUT), Exception(TIMEOUT)])
    with pytest.raises(Exception, match="timed out during startup"):
        _start_local(ray, 2, "cpu")
    assert ray.inits == 2


def test_other_failures_are_not_retried():
    ray = FakeRay([ValueError("bad num_gpus")])
    with pytest.raises(ValueError, match="bad num_gpus"):
        _start_local(ray, 2, "cpu")
    assert ray.inits == 1
