"""common.py: the statistics every report rests on, and the JSON files every stage writes."""
import json
import os

import pytest

from common import PRESETS, group_by_difficulty, paired_difference, parse, phenomena_bins, stage_parser, verdict, wilson, write_json


def test_wilson_interval_matches_hand_computed_values():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # Wilson 1927, z = 1.96
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_paired_interval_is_narrower_than_the_unpaired_one_when_outcomes_agree():
    a = [1] * 50 + [1] * 10 + [0] * 40   # 0.60
    b = [1] * 50 + [0] * 10 + [0] * 40   # 0.50: the same problems, 10 more right with a
    diff, lo, hi = paired_difference(a, b)
    assert diff == pytest.approx(0.10) and lo > 0 and verdict(lo, hi) == "shown"
    # unpaired, the two Wilson intervals overlap: only the pairing resolves this difference
    assert wilson(60, 100)[0] < wilson(50, 100)[1]
    assert verdict(-0.2, -0.1) == "not shown" and verdict(-0.1, 0.1) == "within noise"
    with pytest.raises(ValueError):
        paired_difference([1, 0], [1])


def test_paired_interval_is_reproducible_and_centred_on_the_difference():
    a, b = [1, 0, 1, 1, 0] * 40, [0, 0, 1, 0, 0] * 40
    assert paired_difference(a, b) == paired_difference(a, b)  # a fixed resampling seed
    diff, lo, hi = paired_difference(a, b)
    assert diff == pytest.approx(0.4) and lo < diff < hi


def test_phenomena_bins_are_the_harder_half_of_the_training_range():
    assert phenomena_bins(1) == [1] and phenomena_bins(2) == [2]
    assert phenomena_bins(3) == [2, 3] and phenomena_bins(4) == [3, 4] and phenomena_bins(8) == [5, 6, 7, 8]


def test_group_by_difficulty_keeps_record_order_within_a_bin():
    records = [{"difficulty": d} for d in (2, 1, 2, 3, 1)]
    assert group_by_difficulty(records) == {1: [1, 4], 2: [0, 2], 3: [3]}


def test_write_json_reads_back_the_same_object_with_number_lists_on_one_line(tmp_path):
    obj = {"a": [1, 2, 3], "b": {"c": [{"x": 0.5}], "d": []}, "e": "text", "f": None}
    path = str(tmp_path / "dir" / "m.json")
    write_json(path, obj)
    text = open(path).read()
    assert json.loads(text) == obj
    assert '"a": [1, 2, 3]' in text


def test_a_flag_given_as_zero_overrides_the_preset_and_a_missing_flag_takes_the_presets_value():
    import train_rl
    args = train_rl.parse_args(["--preset", "test", "--lr", "0", "--critic-warmup", "0"])
    preset = PRESETS["test"]
    assert preset.rl.critic_warmup != 0
    assert (args.lr, args.critic_lr, args.critic_warmup) == (0.0, 0.0, 0)  # `or` would have taken the preset's
    assert (args.rollouts, args.minibatch, args.eval_every, args.kl_coef) == (preset.rl.rollouts, preset.rl.minibatch,
                                                                             preset.rl.eval_every, preset.rl.kl_coef)
    parser = stage_parser("x")
    parser.add_argument("--steps", type=int)
    section = lambda preset, args: preset.sft  # noqa: E731
    assert parse(parser, ["--preset", "tiny"], section).steps == PRESETS["tiny"].sft.steps
    assert parse(parser, ["--preset", "tiny", "--steps", "0"], section).steps == 0


def test_every_section_field_is_a_flag_of_its_stage_or_read_from_the_preset_by_name():
    """A field no flag and no code reads would be a default that does nothing."""
    import dataclasses
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    readers = {"sft": ["train_sft.py", "run.sh"], "prm": ["train_prm.py"], "rl": ["train_rl.py"], "search": ["search.py"]}
    for name, files in readers.items():
        text = "".join(open(os.path.join(root, f)).read() for f in files)
        for f in dataclasses.fields(getattr(PRESETS["tiny"], name)):
            flag = "--" + f.name.replace("_", "-")
            assert f'"{flag}"' in text or f"{name}.{f.name}" in text, f"{name}.{f.name}: no {flag} flag in, nor read by, {files}"


def test_the_sweep_widths_train_for_the_sweep_steps_unless_steps_is_given():
    import train_sft
    tiny = PRESETS["tiny"]
    assert train_sft.parse_args(["--width", "48"]).steps == tiny.sft.sweep_steps
    assert train_sft.parse_args(["--width", "48", "--steps", "7"]).steps == 7
    assert train_sft.parse_args([]).steps == tiny.sft.steps


def test_resuming_an_optimizer_keeps_the_learning_rates_of_this_runs_flags():
    import torch
    from common import load_optimizer, make_optimizer
    from model import GPT
    model = GPT(PRESETS["test"].model_config())
    saved = make_optimizer(model, 1e-3, 0.02)
    model(torch.randint(0, 10, (2, 8))).sum().backward()
    saved.step()
    resumed = make_optimizer(model, 5e-4, 0.01)  # the same run resumed with lower --lr and --muon-lr
    load_optimizer(resumed, saved.state_dict())
    assert [g["peak_lr"] for g in resumed.param_groups] == [0.01, 5e-4]
    assert [g["lr"] for g in resumed.param_groups] == [0.01, 5e-4]
    assert len(resumed.state) == len(saved.state) > 0  # the moments came back
