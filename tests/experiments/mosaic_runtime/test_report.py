"""The runtime-vs-simulator table over repeated rounds: medians and spread per scheduler, and the ranking checked
only on the scheduler pairs whose measured order is stable across rounds."""
import math

import pandas as pd
import pytest

from tessera.experiments.mosaic_runtime.report import (describe_ranking, kendall_tau, over_repeats,
                                                       resolved_ranking)


def _round(rnd, scheduler, e2e, sim, aggregation="always", replicas="none>1"):
    return {"scheduler": scheduler, "aggregation": aggregation, "repeat": rnd, "expert_stage_s": 0.75 * e2e,
            "aggregator_stage_s": 0.25 * e2e, "e2e_s": e2e, "sim_expert_stage_s": 0.75 * sim,
            "sim_aggregator_stage_s": 0.25 * sim, "sim_e2e_s": sim, "bypass_rate": 0.0, "replicas": replicas}


def test_medians_spread_and_errors_are_taken_per_scheduler_over_the_rounds():
    rounds = pd.DataFrame([_round(0, "seq", 10.0, 9.0), _round(0, "mosaic", 6.0, 6.6),
                           _round(1, "mosaic", 8.0, 6.6), _round(1, "seq", 12.0, 9.0),
                           _round(2, "seq", 11.0, 9.0), _round(2, "mosaic", 7.0, 6.6)])
    table = over_repeats(rounds)
    assert table["scheduler"].tolist() == ["seq", "mosaic"]  # the first round's order
    seq = table.iloc[0]
    assert (seq["e2e_s"], seq["e2e_min_s"], seq["e2e_max_s"], seq["repeats"]) == (11.0, 10.0, 12.0, 3)
    assert seq["spread_e2e"] == pytest.approx(2.0 / 11.0)
    assert seq["err_e2e"] == pytest.approx(9.0 / 11.0 - 1)
    assert seq["replicas"] == "none>1" and "repeat" not in table.columns


def test_only_pairs_with_disjoint_measured_ranges_count_for_the_ranking():
    rounds = pd.DataFrame([_round(r, s, e, p) for r, vals in enumerate(
        [{"a": (10, 12), "b": (20, 15), "c": (21, 30)}, {"a": (11, 12), "b": (22, 15), "c": (19, 30)}])
        for s, (e, p) in vals.items()])
    r = resolved_ranking(over_repeats(rounds))
    # a [10, 11] is apart from b [20, 22] and c [19, 21]; b and c overlap: unresolved whatever the simulator says
    assert (r["pairs"], r["resolved_pairs"]) == (3, 2)
    assert r["concordant"] == ["a<b", "a<c"] and r["discordant"] == [] and r["kendall_tau_resolved"] == 1.0
    rounds.loc[rounds["scheduler"] == "a", "sim_e2e_s"] = 16.0  # the simulator puts a after b
    r = resolved_ranking(over_repeats(rounds))
    assert r["discordant"] == ["a<b"] and r["kendall_tau_resolved"] == 0.0
    assert "disagrees on a<b" in describe_ranking(r, 2, 0.4)


def test_one_round_resolves_nothing():
    r = resolved_ranking(over_repeats(pd.DataFrame([_round(0, "a", 1.0, 1.0), _round(0, "b", 5.0, 0.5)])))
    assert r["resolved_pairs"] == 0 and math.isnan(r["kendall_tau_resolved"])
    assert "spread is unknown" in describe_ranking(r, 1, 0.0)


def test_kendall_tau_counts_concordant_minus_discordant_pairs():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert kendall_tau([1, 2, 3], [10, 30, 20]) == pytest.approx(1 / 3)


def test_step_columns_split_a_stage_error_into_step_cost_and_time_between_steps():
    from types import SimpleNamespace

    from tessera.experiments.mosaic_runtime.report import stage_step_fit, step_columns

    steps = [{"time_s": 1.0, "fit_s": 0.8, "prefill_tokens": 0, "decode_seqs": 4},
             {"time_s": 3.0, "fit_s": 2.4, "prefill_tokens": 64, "decode_seqs": 2}]
    stage = SimpleNamespace(steps=steps, measured=SimpleNamespace(end_s=4.0),
                            predicted=SimpleNamespace(end_s=3.5, gpu_busy_s={0: 2.0, 1: 1.5}))
    cols = step_columns(stage, "expert", workers=2)
    assert cols["steps_s_expert"] == 4.0 and cols["step_fit_err_expert"] == pytest.approx(-0.2)
    assert cols["busy_expert"] == pytest.approx(4.0 / 8.0) and cols["sim_busy_expert"] == pytest.approx(3.5 / 7.0)
    empty = step_columns(None, "aggregator", workers=2)
    assert set(empty) == {"steps_s_aggregator", "step_fit_err_aggregator", "busy_aggregator", "sim_busy_aggregator"}
    assert all(math.isnan(v) for v in empty.values())
    fit = stage_step_fit(pd.DataFrame([{**s, "stage": "expert"} for s in steps]))
    assert fit["expert"]["steps"] == 2 and fit["expert"]["total"] == pytest.approx(-0.2)
    assert fit["expert"]["decode_batch_max"] == 4 and fit["expert"]["prefill_tokens_max"] == 64
    assert stage_step_fit(pd.DataFrame()) == {}
