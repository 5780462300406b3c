"""data/prepare.py: the splits every later stage reads."""
import dataclasses
import json

import pytest

import common
from data import prepare
from data.task import BACK, parse_problem


def read(out, name):
    with open(out / "data" / f"{name}.jsonl") as f:
        return [json.loads(line) for line in f]


def test_the_splits_have_the_presets_counts_and_difficulties_and_meta_names_them(tmp_path):
    prepare.main(["--preset", "test", "--out", str(tmp_path), "--seed", "3"])
    preset, task = common.PRESETS["test"], common.PRESETS["test"].task
    train, val, test = read(tmp_path, "train"), read(tmp_path, "val"), read(tmp_path, "test")
    assert (len(train), len(val)) == (preset.n_train, preset.n_val)
    assert {r["difficulty"] for r in train + val} == set(range(1, task.max_train_d + 1))
    assert [r["difficulty"] for r in test] == [d for d in range(1, task.max_eval_d + 1) for _ in range(preset.n_test_per_bin)]
    for r in train[:20]:
        parse_problem(r["problem"], task.p)  # the plain-text form reads back
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert (meta["preset"], meta["seed"], meta["counts"]["test"]) == ("test", 3, len(test))
    assert meta["task"] == dataclasses.asdict(task)


def test_the_same_seed_writes_the_same_problems_and_another_seed_others(tmp_path):
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        prepare.main(["--preset", "test", "--out", str(tmp_path / name), "--seed", seed])
    a, b, c = (read(tmp_path / n, "train") for n in "abc")
    assert a == b
    assert {r["problem"] for r in a} != {r["problem"] for r in c}


def test_self_correction_traces_are_written_for_training_only(tmp_path):
    prepare.main(["--preset", "test", "--out", str(tmp_path), "--self-correct", "1.0"])
    assert all(BACK in r["solution"] for r in read(tmp_path, "train"))
    assert not any(BACK in r["solution"] for name in ("val", "test") for r in read(tmp_path, name))
    for rate in ("1.5", "-0.1"):
        with pytest.raises(SystemExit, match=f"--self-correct {rate}: a probability"):
            prepare.main(["--preset", "test", "--out", str(tmp_path), "--self-correct", rate])


def test_a_preset_whose_context_cannot_hold_a_problem_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(common.PRESETS, "test", dataclasses.replace(common.PRESETS["test"], block_size=16))
    with pytest.raises(SystemExit, match="does not fit block_size 16"):
        prepare.main(["--preset", "test", "--out", str(tmp_path)])
