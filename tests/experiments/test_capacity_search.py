"""experiment=capacity_search: bisection on the arrival rate finds the highest rate meeting the SLOs, seeded (the same
probes twice), resumable (a finished run is skipped), with its probes table and figure; bad settings name the key."""
import json

import pandas as pd
import pytest

from tessera.experiments.capacity_search import describe, search
from tessera.experiments.config import ConfigError
from tests.experiments.conftest import run_cli


def test_bisection_brackets_the_highest_rate_that_meets():
    def measure(rate):
        return {"rate": rate, "meets": rate <= 3.7}

    capacity, probes = search(measure, 0.25, 64.0, 0.02)
    assert 3.7 / 1.02 <= capacity <= 3.7
    failing = min(p["rate"] for p in probes if not p["meets"])
    assert failing / capacity - 1 <= 0.02 and failing > 3.7
    assert search(measure, 4.0, 64.0, 0.02)[0] == 0.0  # even rate_lo fails
    assert search(measure, 0.5, 2.0, 0.02) == (2.0, [measure(0.5), measure(2.0)])  # rate_hi meets


def test_a_small_search_writes_probes_and_figure_and_resumes(tmp_path):
    args = ["experiment=capacity_search", "params.num_requests=80", "params.slo_ttft_s=0.5", "params.tolerance=0.25",
            "output.progress=false", "output.print_table=false"]
    runs = [tmp_path / "a", tmp_path / "b"]
    for run_dir in runs:
        proc = run_cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    summary = json.loads((runs[0] / "summary.json").read_text())["summary"]
    probes = pd.read_csv(runs[0] / "probes.csv")
    capacity = summary["capacity_rate_per_s"]
    assert capacity > 0 and probes.loc[probes["rate"] == capacity, "meets"].all()
    above = probes.loc[probes["rate"] > capacity]
    assert len(above) and not above["meets"].any()
    assert above["rate"].min() / capacity - 1 <= 0.25
    assert (runs[0] / "capacity.png").stat().st_size > 10_000
    pd.testing.assert_frame_equal(probes, pd.read_csv(runs[1] / "probes.csv"))  # seeded: the same probes
    again = run_cli([*args, f"hydra.run.dir={runs[0]}"], cwd=tmp_path)
    assert "skipping" in again.stdout


def test_the_first_arrivals_are_not_measured(composed):
    """At a rate beyond capacity the queue grows: leaving out the first arrivals (which meet an empty engine) can
    only raise the measured TTFT percentile, and the count measured is the rest."""
    from tessera.experiments.capacity_search import SLO, probe
    from tessera.experiments.resolve import resolve

    spec = resolve(composed(["experiment=capacity_search"]))
    workload = {**spec.workload, "num_requests": 120}
    slo = SLO(0.5, 0.1, 90)
    whole, warm = (probe(spec, workload, 40.0, slo, w) for w in (0.0, 0.25))
    assert (whole["measured"], warm["measured"]) == (120, 90)
    assert warm["ttft_p_s"] >= whole["ttft_p_s"] > slo.ttft_s and not warm["meets"]


@pytest.mark.parametrize("change, message", [
    ("params.percentile=0", r"params.percentile=0 is invalid: use a percentile in \(0, 100\]"),
    ("params.percentile=abc", "params.percentile='abc' is invalid"),
    ("params.warmup_fraction=1", "params.warmup_fraction=1 is invalid"),
    ("params.rate_lo=8", r"params.rate_hi=4 is invalid: use requests/s in \(8, 1e\+09\] \(above rate_lo\)"),
    ("params.rate_lo=abc", "params.rate_lo='abc' is invalid"),
    ("params.rate_hi=1e12", r"params.rate_hi=1000000000000.0 is invalid: use requests/s in \(0.25, 1e\+09\]"),
    ("params.slo_tpot_s=nan", "params.slo_tpot_s=nan is invalid: use seconds > 0"),
    ("params.num_requests=2.5", "params.num_requests=2.5 is invalid: use a whole request count"),
    ("params.max_queue_growth=abc", "params.max_queue_growth='abc' is invalid"),
    ("params.rate_lo=1e-12", r"params.rate_lo=1e-12 is invalid: use requests/s in \[1e-09, 1e\+09\]"),
    ("params.tolerance=0", "params.tolerance=0 is invalid: use a relative width > 0"),
    ("workload=azure_code", "has none: use e.g. workload=sharegpt_poisson")])
def test_bad_settings_name_the_key(composed, change, message):
    with pytest.raises(ConfigError, match=message):
        describe(composed(["experiment=capacity_search", *(["params.rate_hi=4"] if "rate_hi" not in change else []),
                           change]))


def test_a_short_probe_of_an_overload_is_caught_by_its_growing_queue(composed):
    """200 requests at 4 req/s on an engine that serves about 3: the excess is admitted into larger batches, so
    the SLO percentiles pass, but requests pile up at a quarter of the arrival rate; at 1 req/s they do not."""
    from tessera.experiments.capacity_search import SLO, probe
    from tessera.experiments.resolve import resolve

    spec = resolve(composed(["experiment=capacity_search"]))
    workload = {**spec.workload, "num_requests": 200}
    slo = SLO(2.0, 0.1, 90)
    over, lax = probe(spec, workload, 4.0, slo, 0.1, 0.05), probe(spec, workload, 4.0, slo, 0.1, None)
    assert lax["meets"] and over["ttft_p_s"] == lax["ttft_p_s"] <= slo.ttft_s  # the percentiles alone pass it
    assert over["queue_growth"] > 0.1 and not over["stable"] and not over["meets"]
    assert over["queue_growth"] == pytest.approx(1 - over["throughput_per_s"] / 4.0, abs=0.12)
    light = probe(spec, workload, 1.0, slo, 0.1, 0.05)
    assert abs(light["queue_growth"]) < 0.02 and light["stable"] and light["meets"]


def test_queue_growth_is_bad_config_when_not_a_share(composed):
    with pytest.raises(ConfigError, match="params.max_queue_growth=1.5 is invalid"):
        describe(composed(["experiment=capacity_search", "params.max_queue_growth=1.5"]))


def test_the_title_counts_every_gpu_and_names_the_kv_policy(composed):
    from tessera.experiments.capacity_search import cluster_label
    from tessera.experiments.resolve import resolve

    two = resolve(composed(["experiment=capacity_search", "cluster.tp=2", "cluster.num_workers=2"]))
    assert cluster_label(two) == "4 x H100-SXM-80GB (2 worker(s) of TP 2 x PP 1, full KV)"  # was "2 x H100"
    piped = resolve(composed(["experiment=capacity_search", "model=llama2_70b", "cluster.tp=2", "cluster.pp=2"]))
    assert cluster_label(piped) == "4 x H100-SXM-80GB (1 worker(s) of TP 2 x PP 2, full KV)"
    one = resolve(composed(["experiment=capacity_search", "kvpolicy=flexicache"]))
    assert cluster_label(one) == "1 x H100-SXM-80GB (flexicache)"
