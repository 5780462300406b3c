"""plots.py: the report's figures, and the tables-only report where matplotlib is missing."""
import sys

import pytest

import plots


def grid_rows():
    return [{"method": m, "budget": n, "difficulty": d, "problems": 10, "accuracy": 0.1 * n ** 0.5 / d,
             "generated_tokens": 30.0 * n} for m in ("majority", "pass@n") for n in (1, 4) for d in (1, 2, 3, 4, 5)]


def rl_metrics():
    log = [{"iteration": i, "phase": "policy", "reward": 0.1 * i, "kl": 0.01 * i, "entropy": 0.5, "length": 30, "accuracy": 0.5}
           for i in range(1, 5)]
    return {"training_log": log, "val_log": [{"iteration": 0, "accuracy": 0.5}, {"iteration": 4, "accuracy": 0.6}]}


def test_in_range_bins_split_into_up_to_three_panels_and_the_bins_beyond_into_one():
    assert plots.difficulty_groups([1, 2, 3, 4, 5], 3) == [("d=1", [1]), ("d=2", [2]), ("d=3", [3]),
                                                            ("d=4-5 (beyond training)", [4, 5])]
    assert [g for _, g in plots.difficulty_groups(list(range(1, 9)), 6)] == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert plots.difficulty_groups([1, 2], 2) == [("d=1", [1]), ("d=2", [2])]


def test_the_figures_are_written_as_png(tmp_path):
    pytest.importorskip("matplotlib")
    for name, ok in (("grid.png", plots.plot_grid(grid_rows(), 3, str(tmp_path / "grid.png"))),
                     ("rl.png", plots.plot_rl(rl_metrics(), str(tmp_path / "rl.png")))):
        assert ok is True
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_no_figure_is_written_and_the_caller_is_told(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert plots.plot_grid(grid_rows(), 3, str(tmp_path / "grid.png")) is False
    assert plots.plot_rl(rl_metrics(), str(tmp_path / "rl.png")) is False
    assert not list(tmp_path.iterdir())
