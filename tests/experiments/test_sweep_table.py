"""The table a sweep ends with: the varied values in numeric order where they are numbers, and each run's headline
numbers, a capacity search's capacity among them."""
import json

from tessera.experiments.sweep_table import sweep_table


def write_run(folder, overrides: list[str], summary: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"metadata": {"overrides": overrides}, "summary": summary}))


def test_numeric_values_sort_as_numbers_and_a_capacity_is_a_headline(tmp_path):
    for i, (seqs, capacity) in enumerate([(16, 1.5), (256, 4.0), (64, 3.25)]):
        write_run(tmp_path / str(i), ["experiment=capacity_search", f"engine.max_num_seqs={seqs}"],
                  {"capacity_rate_per_s": capacity, "num_probes": 7})
    table = sweep_table(tmp_path)
    assert table["engine.max_num_seqs"].tolist() == ["16", "64", "256"]  # was 16, 256, 64 (sorted as text)
    assert table["capacity (req/s)"].tolist() == [1.5, 3.25, 4.0]


def test_text_values_sort_as_text(tmp_path):
    for i, name in enumerate(["vllm_v1", "orca", "sarathi"]):
        write_run(tmp_path / str(i), [f"engine.scheduler={name}"], {"num_finished": 10 + i})
    table = sweep_table(tmp_path)
    assert table["engine.scheduler"].tolist() == ["orca", "sarathi", "vllm_v1"]
    assert table["finished"].tolist() == [11, 12, 10]
