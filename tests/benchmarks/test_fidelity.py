"""The validation set and the fidelity benchmark: sources are documented and self-consistent, fits stay apart."""
import pandas as pd
import pytest

from benchmarks.fidelity import lambda_rows, load_profile
from tessera.paths import data_path

SOURCES = ("nemo_trtllm_llama2", "flexicache_vllm_v1", "lambda_vllm_sharegpt")


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_has_a_source_note_and_known_splits(source):
    folder = data_path("validation", source)
    assert (folder / "SOURCE.md").read_text().strip()
    table = pd.read_csv(folder / "measurements.csv")
    assert set(table["split"]) <= {"fitted", "held_out", "excluded"}
    assert (table["split"] == "held_out").any()


def test_lambda_rows_are_transcribed_consistently():
    # Output throughput is the sum of the stored output lengths over the run's duration, as benchmark_serving.py
    # computes it: a mistyped length, duration or throughput breaks the identity.
    table = pd.read_csv(data_path("validation", "lambda_vllm_sharegpt", "measurements.csv"))
    for row in table.itertuples():
        inputs, outputs = row.input_lens.split(), row.output_lens.split()
        assert len(inputs) == len(outputs) == row.num_prompts
        total = sum(int(x) for x in outputs)
        assert total / row.duration_s == pytest.approx(row.output_throughput_tok_s, rel=2e-3), row.file


def test_lambda_fitted_and_held_out_rows_are_different_models():
    table = pd.read_csv(data_path("validation", "lambda_vllm_sharegpt", "measurements.csv"))
    fitted = set(table.loc[table["split"] == "fitted", "model"])
    held_out = set(table.loc[table["split"] == "held_out", "model"])
    assert fitted and held_out and not fitted & held_out


def test_lambda_source_simulates_only_the_requested_split():
    rows = lambda_rows(load_profile("vllm_v0_multistep"), splits=("fitted",))
    assert rows and {r["split"] for r in rows} == {"fitted"}
    assert {r["metric"] for r in rows} == {"tpot", "ttft", "throughput"}
    assert all(r["predicted"] > 0 for r in rows)
