"""bench.py: each benchmark measures what it says, on the test preset's model (CPU, seconds)."""
import sys

import pytest
import torch

import bench
from common import PRESETS
from model import GPT

CPU = torch.device("cpu")


def test_the_cached_and_uncached_loops_write_the_same_tokens():
    r = bench.bench_generation(PRESETS["test"], CPU, n_new=16, repeats=1)
    assert r["same_tokens"] == 1.0  # the cache changes the cost, never the tokens
    assert r["new_tokens"] == 16 and r["kv_cache_tokens_per_s"] > 0 and r["no_cache_tokens_per_s"] > 0


def test_the_training_bench_runs_the_presets_model_and_micro_batch():
    preset = PRESETS["test"]
    r = bench.bench_training(preset, CPU, steps=1)
    assert r["params"] == sum(p.numel() for p in GPT(preset.model_config()).parameters())
    assert r["micro_batch"] == preset.sft.micro_batch and r["tokens_per_s"] > 0


def test_the_search_bench_counts_the_tokens_its_frontiers_generate():
    r = bench.bench_search(PRESETS["test"], CPU, frontiers=(1, 2), step_tokens=4, trees=2, simulations=2)
    assert set(r["tokens_per_s"]) == {1, 2} and all(v > 0 for v in r["tokens_per_s"].values())
    assert r["mcts"]["trees"] == 2 and r["mcts"]["simulations"] >= 2 and r["mcts"]["generated_tokens"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the attention benchmark runs where there is a GPU")
def test_the_attention_bench_without_a_gpu_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench.py", "--attention", "--device", "cpu"])
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        bench.main()
