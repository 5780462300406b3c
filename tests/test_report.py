"""report.py gathers the stages' JSON into one markdown file: tables from hand-made metrics."""
import json
import os

import pytest

import report


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def test_report_tables_come_from_the_metrics(tmp_path):
    out = str(tmp_path)
    write(f"{out}/sft/metrics.json", {"preset": "test", "device": "cpu", "params": 1000, "train_tokens": 500,
                                      "wall_time_s": 12.0, "accuracy_by_difficulty": {"1": 0.5, "2": 0.25}})
    write(f"{out}/search/scaling.json", [{"method": "greedy", "budget": 1, "difficulty": 1, "accuracy": 0.5, "problems": 2,
                                          "generated_tokens": 20.0, "scored_tokens": 5.0}])
    report.main(["--out", out])
    text = open(f"{out}/report.md").read()
    assert "| SFT | 0.500 | 0.250 |" in text
    assert "| sft | 3.00e+06 |" in text  # 6 x 1000 parameters x 500 tokens
    assert "| greedy | 1 | 5.00e+04 |" in text  # 2 x 1000 x (20 + 5) tokens
    assert "| sft | 12 |" in text
    assert "No PRM yet" in text


def test_power_fit_recovers_the_exponent_of_an_exact_power_law():
    xs = [1e6, 1e7, 1e8]
    assert report.power_fit(xs, [3 * x ** -0.25 for x in xs]) == pytest.approx(-0.25)
    assert report.power_fit(xs[:2], [1.0, 0.5]) is None  # two points: no fit


def sft_metrics(width, params, tokens, acc):
    return {"preset": "test", "device": "cpu", "width": width, "params": params, "train_tokens": tokens,
            "train_flops": 6 * params * tokens, "wall_time_s": 1.0, "accuracy_by_difficulty": acc}


def test_exchange_rate_compares_at_matched_total_flops(tmp_path):
    out = str(tmp_path)
    write(f"{out}/data/meta.json", {"counts": {"test": 10}})
    write(f"{out}/sft/metrics.json", sft_metrics(96, 1000, 100, {"1": 0.5, "2": 0.2}))    # 6e5 training FLOPs
    write(f"{out}/sft_w48/metrics.json", sft_metrics(48, 100, 100, {"1": 0.3, "2": 0.1}))  # 6e4
    write(f"{out}/prm/metrics.json", {"train_flops": 1e5, "step_auroc": 0.9, "step_auroc_by_difficulty": {},
                                      "first_error_lowest_rate": 0.5, "first_error_lowest_chance": 0.4, "best_of_n": []})
    ids = list(range(100))
    write(f"{out}/search/scaling.json", [
        {"method": "greedy", "budget": 1, "difficulty": 1, "accuracy": 0.5, "generated_tokens": 10, "problems": 100,
         "problem": ids, "correct": [1] * 50 + [0] * 50},
        {"method": "greedy", "budget": 1, "difficulty": 2, "accuracy": 0.2, "generated_tokens": 10, "problems": 100}])
    write(f"{out}/search_sft_w48/scaling.json", [
        # greedy of the larger policy costs 6e5 + 10 problems x 2 x 1000 x 10 tokens = 8e5 in all
        # d=1: majority at 16 is cheaper (6e4 + 10 x 2 x 100 x 160 = 3.8e5) and better: search wins
        {"method": "majority", "budget": 16, "difficulty": 1, "accuracy": 0.9, "generated_tokens": 160, "problems": 100,
         "problem": ids, "correct": [1] * 90 + [0] * 10},
        # d=2: the PRM's training (1e5) and reading (10 x 2 x 1000 x 200 = 4e6) make it dearer than greedy: left out
        {"method": "bon-prm", "budget": 16, "difficulty": 2, "accuracy": 0.9, "generated_tokens": 160,
         "scored_tokens": 200, "problems": 100},
        {"method": "greedy", "budget": 1, "difficulty": 2, "accuracy": 0.05, "generated_tokens": 10, "problems": 100},
        {"method": "pass@n", "budget": 16, "difficulty": 1, "accuracy": 1.0, "generated_tokens": 160, "problems": 100}])
    sizes = report.sweep(out)
    assert [name for name, _ in sizes] == ["sft_w48", "sft"]
    points = report.exchange_points(out, sizes, report.load(out, "prm"))
    assert all(p["method"] != "pass@n" for p in points)
    bon = next(p for p in points if p["method"] == "bon-prm")
    assert bon["flops"] == pytest.approx(6e4 + 1e5 + 10 * 2 * (100 * 160 + 1000 * 200))
    text = report.exchange_section(points)
    row1 = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert row1.startswith("| 1 | 0.500 (8.00e+05) | sft_w48 majority N=16: 0.900 (3.80e+05) | +0.400 (")
    assert row1.endswith("): shown |")  # 40 problems more right out of 100, paired: far from zero
    assert "| 2 | 0.200 (8.00e+05) | sft_w48 greedy N=1: 0.050 (8.00e+04) | -0.150 (no per-problem outcomes: no interval) |" in text


def test_self_correction_table_pairs_runs_of_the_same_size(tmp_path):
    out = str(tmp_path)
    write(f"{out}/sft/metrics.json", sft_metrics(96, 1000, 100, {"1": 0.5, "2": 0.2}))
    write(f"{out}/selfcorrect/data/meta.json", {"self_correct": 0.2})
    write(f"{out}/selfcorrect/sft/metrics.json", {**sft_metrics(96, 1000, 100, {"1": 0.6, "2": 0.3}),
                                                  "back_rate_by_difficulty": {"1": 0.05, "2": 0.1}})
    text = report.self_correction_section(out)
    assert "rate 0.2" in text
    assert "| 1 | 0.500 | 0.600 | - | 0.050 |" in text and "| 2 | 0.200 | 0.300 | - | 0.100 |" in text


def grid_row(method, budget, d, problems, correct, tokens=10.0):
    return {"method": method, "budget": budget, "difficulty": d, "accuracy": sum(correct) / len(correct),
            "problems": len(correct), "generated_tokens": tokens, "problem": problems, "correct": correct}


def outcomes(problems, difficulty, correct):
    return {"outcomes": {"problem": problems, "difficulty": difficulty, "correct": correct, "tokens": [9] * len(problems)}}


def test_verdicts_are_computed_from_per_problem_outcomes(tmp_path):
    """Hand-made outcomes on 100 problems of the phenomena bins (d = 2 of training difficulties 1..2):
    a clear gain is shown, a clear loss is not shown, a tie is within noise, a missing stage is not run."""
    out = str(tmp_path / "tiny")
    ids = list(range(100))
    greedy = [1] * 30 + [0] * 70
    write(f"{out}/data/meta.json", {"task": {"max_train_d": 2}, "counts": {"test": 100}})
    write(f"{out}/search/scaling.json", [
        grid_row("greedy", 1, 2, ids, greedy),
        grid_row("majority", 4, 2, ids, [1] * 60 + [0] * 40),          # +0.30 over greedy: shown
        grid_row("prm-vote", 4, 2, ids, [1] * 30 + [0] * 70),          # greedy's outcomes: within noise
        grid_row("bon-orm", 4, 2, ids, [1] * 60 + [0] * 40),           # the same as majority: within noise
        grid_row("bon-prm", 4, 2, ids, [1] * 20 + [0] * 80),           # -0.40 against the ORM: not shown
        grid_row("beam", 4, 2, ids, [1] * 20 + [0] * 79 + [1]),        # +0.01 against best-of-N: within noise
        grid_row("majority", 4, 1, ids, [0] * 100),                    # d = 1 is not a phenomena bin: ignored
    ])
    sft = outcomes(ids, [2] * 100, greedy)
    write(f"{out}/rl/metrics.json", {**outcomes(ids, [2] * 100, [1] * 50 + [0] * 50), "before": sft})
    claims = {c["phenomenon"] + c["a"]: c for c in report.judge(out, max_train_d=2)}
    assert report.phenomena_bins(2) == [2] and report.phenomena_bins(3) == [2, 3] and report.phenomena_bins(4) == [3, 4]
    assert claims["accuracy rises with test-time computePRM-weighted vote of 4"]["difference"] == 0
    compute = claims["a vote alone, no verifier, beats greedy (self-consistency)majority of 4"]
    assert compute["verdict"] == "shown" and compute["difference"] == pytest.approx(0.30)
    assert compute["problems"] == 100 and compute["interval"][0] > 0.15
    assert claims["an outcome verifier picks better than a voteORM best-of-4"]["verdict"] == "within noise"
    assert claims["process reward beats outcome rewardPRM best-of-4"]["verdict"] == "not shown"
    assert claims["step-level search beats best-of-N at matched tokensbeam at N=4"]["verdict"] == "within noise"
    assert claims["step-level search beats best-of-N at matched tokensmcts at N=4"]["verdict"] == "not run"
    rl = claims["RL raises pass@1RL greedy"]
    assert rl["verdict"] == "shown" and rl["difference"] == pytest.approx(0.20)
    # a second seed where RL loses: the table says so, and the verdict over seeds is mixed
    seed1 = str(tmp_path / "tiny_seed1")
    write(f"{seed1}/rl/metrics.json", {**outcomes(ids, [2] * 100, [0] * 100), "before": sft})
    assert report.seed_runs(seed1) == [out, seed1]
    text = report.verdict_section(out, max_train_d=2)
    row = next(line for line in text.splitlines() if line.startswith("| RL raises pass@1"))
    assert "0.500 - 0.300 = +0.200" in row and "*shown*" in row and "*not shown*" in row and "**mixed**" in row


def test_the_verdicts_compare_at_the_largest_budget_every_method_ran_and_judge_best_of_n_beyond_it(tmp_path):
    """Beam and MCTS stop at 16, best-of-N goes on to 64: the head-to-head rows are at 16, and four
    more ask whether the vote and best-of-64 keep paying (PRM) or over-optimise (ORM)."""
    ids = list(range(20))
    def row(method, budget, correct):
        return {"method": method, "budget": budget, "difficulty": 2, "problem": ids, "correct": correct, "problems": 20,
                "accuracy": sum(correct) / 20, "generated_tokens": 10.0 * budget, "interval": [0, 1]}
    grid = [row("greedy", 1, [0] * 20)] + [row(m, n, [1] * 10 + [0] * 10) for m in ("majority", "bon-prm", "bon-orm", "bon-confidence")
                                           for n in (4, 16)]
    grid += [row(m, n, [1] * 10 + [0] * 10) for m in ("beam", "mcts") for n in (4, 16)]
    grid += [row("bon-prm", 64, [1] * 20), row("bon-orm", 64, [0] * 20), row("majority", 64, [1] * 10 + [0] * 10)]
    grid += [row("prm-vote", 16, [1] * 5 + [0] * 15), row("prm-vote", 64, [1] * 15 + [0] * 5)]
    assert report.common_budget(grid) == 16
    assert report.common_budget([]) is None
    write(str(tmp_path / "search" / "scaling.json"), grid)
    claims = {(c["phenomenon"], c["a"]): c for c in report.judge(str(tmp_path), max_train_d=3)}
    assert claims["process reward beats outcome reward", "PRM best-of-16"]["difference"] == 0
    assert claims["process reward beats outcome reward", "PRM best-of-64"]["difference"] == 1.0
    assert claims["PRM best-of-N holds as N grows", "PRM best-of-64"]["difference"] == 0.5
    assert claims["PRM best-of-N holds as N grows", "PRM best-of-64"]["holds"]  # judged over seeds as "does not fall"
    assert not claims["process reward beats outcome reward", "PRM best-of-64"]["holds"]
    assert claims["accuracy keeps rising with test-time compute", "PRM-weighted vote of 64"]["difference"] == 0.5
    assert claims["more samples over-optimise the ORM (Gao et al.)", "ORM best-of-16"]["verdict"] == "shown"
    assert claims["step-level search beats best-of-N at matched tokens", "mcts at N=16"]["problems"] == 20
    # MCTS that stopped at a quarter of its budget's tokens is matched with the best-of-N of as many tokens
    for r in grid:
        r["generated_tokens"] = 10.0 * r["budget"] / (4 if r["method"] == "mcts" else 1)
    write(str(tmp_path / "search" / "scaling.json"), grid)
    assert report.matched_budget(grid, "mcts", 16, [2]) == 4, "MCTS spent best-of-4's tokens: is it matched by N, not tokens?"
    assert report.matched_budget(grid, "beam", 16, [2]) == 16
    matched = {c["a"]: c for c in report.judge(str(tmp_path), max_train_d=3) if c["phenomenon"].endswith("at matched tokens")}
    assert matched["mcts at N=16"]["b"] == "PRM best-of-4" and matched["beam at N=16"]["b"] == "PRM best-of-16"
    # a seed whose grid stopped at 16 makes the same claims in the same order (those beyond 16 not run): rows line up
    write(str(tmp_path / "short" / "search" / "scaling.json"), [r for r in grid if r["budget"] <= 16])
    short = report.judge(str(tmp_path / "short"), max_train_d=3)
    assert [c["phenomenon"] for c in short] == [c["phenomenon"] for c in report.judge(str(tmp_path), max_train_d=3)]
    assert [c["verdict"] for c in short if c["a"] == "PRM best-of-more"] == ["not run", "not run"]


def test_a_claim_that_a_holds_against_b_holds_over_seeds_unless_a_seed_shows_it_falling():
    assert report.both(["shown", "within noise"]) == "mixed"  # "A beats B": two seeds disagree
    assert report.both(["shown", "within noise"], holds=True) == "holds"  # "A is not worse": neither falls
    assert report.both(["within noise", "within noise"], holds=True) == "within noise"
    assert report.both(["shown", "not shown"], holds=True) == "mixed"  # one seed falls
    assert report.both(["shown", "not run"], holds=True) == "mixed"
