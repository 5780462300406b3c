"""The `small` preset on the CPU: every stage runs with its task and its model (16 assignments,
difficulties 1..8 trained and 9..12 beyond, 6 layers of width 384, block size 448) for a few
steps and a few problems, so that a shape, block-size or config mistake of the GPU preset shows
up here and not on someone's GPU."""
import dataclasses
import json
import time

import pytest

import common
import model
import report
import search
import train_prm
import train_rl
import train_sft
from data import prepare
from data.task import EOT
from data.tokenizer import special_id

SMALL = common.PRESETS["small"]
# the small preset with its counts shrunk: the task, the model, the learning rates and the sweep widths stay
SMOKE = dataclasses.replace(
    SMALL, n_train=64, n_val=2, n_test_per_bin=1, eval_problems=2,
    sft=dataclasses.replace(SMALL.sft, steps=2, batch_size=2, micro_batch=1, warmup=1, eval_every=2),  # 2 micro-batches a step
    prm=dataclasses.replace(SMALL.prm, problems=2, rollouts=2, agreement_samples=1, steps=1, batch_size=2,
                            eval_problems=1, eval_samples=2),
    rl=dataclasses.replace(SMALL.rl, iterations=2, rollouts=2, minibatch=1, eval_every=1),
    search=dataclasses.replace(SMALL.search, grid_problems=1, grid_problems_other=1))


@pytest.fixture
def quick_to_stop(monkeypatch):
    """A policy trained for 2 steps never writes the end-of-text token, so each of its solutions
    would run to the block size: minutes of CPU per evaluation. Here every generation (a KV-cached
    call of the model) writes 4 tokens and then the end-of-text token."""
    forward, eot = model.GPT.forward, special_id(EOT)

    def forward_quick_to_stop(self, idx, head="lm", **kwargs):
        out = forward(self, idx, head, **kwargs)
        cache = kwargs.get("kv_cache")
        if head != "lm" or cache is None:
            return out
        cache.tokens_written = getattr(cache, "tokens_written", -1) + 1  # the prompt's call writes the first token
        if cache.tokens_written < 4:
            return out
        out = out.clone()
        out[:, -1, eot] = out.amax() + 30  # every row's likeliest token, even at temperature 1
        return out
    monkeypatch.setattr(model.GPT, "forward", forward_quick_to_stop)


@pytest.mark.slow
def test_every_stage_runs_with_the_small_presets_task_and_model(tmp_path, monkeypatch, quick_to_stop, capsys):
    monkeypatch.setitem(common.PRESETS, "small_smoke", SMOKE)
    out, seconds = str(tmp_path), {}
    flags = ["--preset", "small_smoke", "--out", out, "--device", "cpu"]
    stages = {"prepare": lambda: prepare.main(flags),
              "sft": lambda: train_sft.main(flags),
              "prm": lambda: train_prm.main(flags),
              "rl": lambda: train_rl.main(flags + ["--critic-warmup", "1"]),
              "search": lambda: search.main(flags + ["--method", "all", "--budget", "1,2"]),
              "report": lambda: report.main(["--out", out])}
    for name, run in stages.items():
        start = time.time()
        run()
        seconds[name] = round(time.time() - start, 1)
    with capsys.disabled():
        print(f"\nsmall preset smoke test, seconds per stage: {seconds}")
    assert json.load(open(tmp_path / "data" / "meta.json"))["task"] == dataclasses.asdict(SMALL.task)
    for stage in ("sft", "rl"):
        ckpt = model.load_checkpoint(str(tmp_path / stage / "ckpt.pt"), expect_config=SMALL.model_config())
        assert ckpt["config"].block_size == 448 and ckpt["config"].n_embd == 384
    model.load_checkpoint(str(tmp_path / "prm" / "ckpt.pt"), expect_config=SMALL.model_config())
    rows = json.load(open(tmp_path / "search" / "scaling.json"))
    assert {r["difficulty"] for r in rows} == set(range(1, SMALL.task.max_eval_d + 1))
    assert {r["method"] for r in rows} >= set(search.METHODS)
    assert "preset small_smoke" in (tmp_path / "report.md").read_text()
    for width in SMALL.sft.sweep_widths:  # run.sh's smaller SFT sizes: whole heads of the preset's head size
        assert SMALL.model_config(width).n_embd == width
