"""report.py gathers the stages' JSON into one markdown file: tables from hand-made metrics."""
import json
import os

import report


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def test_report_tables_come_from_the_metrics(tmp_path):
    out = str(tmp_path)
    write(f"{out}/sft/metrics.json", {"preset": "test", "device": "cpu", "params": 1000, "train_tokens": 500,
                                      "wall_time_s": 12.0, "accuracy_by_difficulty": {"1": 0.5, "2": 0.25}})
    write(f"{out}/search/scaling.json", [{"method": "greedy", "budget": 1, "difficulty": 1, "accuracy": 0.5,
                                          "generated_tokens": 20.0, "scored_tokens": 5.0}])
    report.main(["--out", out])
    text = open(f"{out}/report.md").read()
    assert "| SFT | 0.500 | 0.250 |" in text
    assert "| sft | 3.00e+06 |" in text  # 6 x 1000 parameters x 500 tokens
    assert "| greedy | 1 | 5.00e+04 |" in text  # 2 x 1000 x (20 + 5) tokens
    assert "| sft | 12 |" in text
    assert "No PRM yet" in text
