"""The run report's latency CDF figure: log axes labelled in plain numbers, 1-2-5 steps over a narrow range."""
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tessera.experiments.report import latency_cdf_figure, log_axis_plain_labels


def labelled_ticks(values):
    fig = Figure()
    ax = fig.subplots()
    ax.plot(values, np.linspace(0, 1, len(values)))
    log_axis_plain_labels(ax, values)
    ticks = [float(t) for t in ax.get_xticks() if values.min() <= t <= values.max()]
    return ticks, [ax.xaxis.get_major_formatter()(t, 0) for t in ticks], ax


def test_a_narrow_range_gets_1_2_5_steps_and_a_wide_one_decades():
    ticks, labels, ax = labelled_ticks(np.array([8.0, 12.0, 30.0, 190.0]))  # TPOT-like: 1.4 decades
    assert ticks == [10.0, 20.0, 50.0, 100.0] and labels == ["10", "20", "50", "100"]
    assert ax.xaxis.get_minorticklocs().size == 0
    ticks, labels, _ = labelled_ticks(np.array([7.0, 90.0, 2e3, 2.3e4]))  # E2E-like: 3.5 decades
    assert ticks == [10.0, 100.0, 1000.0, 10000.0] and labels == ["10", "100", "1,000", "10,000"]
    ticks, _, _ = labelled_ticks(np.array([50.0, 400.0, 1.0e4]))  # 2.3 decades: 1,000 and 2,000 would collide
    assert ticks == [100.0, 1000.0, 10000.0]
    _, labels, _ = labelled_ticks(np.array([0.2, 0.9]))  # sub-unit values keep their decimals
    assert labels == ["0.2", "0.5"]


def test_the_figure_is_written_from_a_run_frame(tmp_path):
    frame = pd.DataFrame({"request_id": range(4), "status": ["finished"] * 3 + ["rejected"],
                          "arrival_s": [0.0] * 4, "start_s": [0.0] * 4, "first_token_s": [0.01, 0.02, 0.5, np.nan],
                          "finish_s": [0.1, 0.3, 2.0, np.nan], "prompt_tokens": [10] * 4,
                          "output_tokens": [5, 5, 20, 0]})
    path = latency_cdf_figure(frame, tmp_path / "cdf.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
