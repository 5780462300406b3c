"""Does the sampling temperature decide whether a vote beats greedy?

At temperature 1 a single sample of the tiny SFT policy is much worse than its greedy answer (the
grid's N = 1 rows: d = 2 0.54 against 0.69), and majority of 16 only climbs back to greedy. This
reruns the search grid's methods on the phenomena bins (d = 2, 3) at another temperature, on the
held-out problems (the second 100 of each bin, which no committed number uses), and prints each
verdict row of the report that depends on sampling with its paired 95% interval.

    OMP_NUM_THREADS=1 python results/search/temperature.py out/tiny 0 0.7 [DRAW]
    (DRAW, default 0, seeds another draw of the samples; writes
    results/search/runs/temperature_seed{S}_t{T}[_draw{DRAW}].json)
    python results/search/temperature.py summary
    (per seed and temperature, the draws pooled: each problem's outcome averaged over the draws
    before the paired bootstrap over problems)
"""
import glob
import json
import os
import sys
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import search  # noqa: E402
from common import autocast, group_by_difficulty, paired_difference, phenomena_bins, read_split, read_task  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402
from reward import load_reward_model  # noqa: E402

ROWS = [("majority", 16, "greedy", 1), ("bon-orm", 16, "majority", 16), ("bon-prm", 16, "bon-orm", 16),
        ("prm-vote", 16, "greedy", 1), ("prm-vote", 64, "prm-vote", 16), ("bon-prm", 64, "bon-prm", 16),
        ("bon-prm", 16, "bon-confidence", 16), ("bon-prm", 64, "bon-orm", 64), ("bon-orm", 16, "bon-orm", 64),
        ("beam", 16, "bon-prm", 16), ("mcts", 16, "bon-prm", 16)]


def held_out_setup(out, seed, temperature):
    """The run's SFT policy, PRM and ORM as search.py sets them up, and the held-out problems: the
    test problems of the phenomena bins that follow the grid's own."""
    args = search.parse_args(["--preset", "tiny", "--out", out, "--seed", str(seed), "--temperature", str(temperature)])
    task = read_task(out)
    policy = model_from_checkpoint(load_checkpoint(os.path.join(out, "sft", "ckpt.pt"))).eval()
    prm = load_reward_model(os.path.join(out, "prm", "ckpt.pt"), policy, args.attn, "cpu")
    orm = load_reward_model(os.path.join(out, "prm", "orm.pt"), policy, args.attn, "cpu")
    setup = search.Setup.bind(policy, prm, orm, task.p, args)
    grid = json.load(open(os.path.join(out, "search", "scaling.json")))
    n_grid = {r["difficulty"]: r["problems"] for r in grid if r["method"] == "greedy"}
    test = read_split(out, "test")
    by_bin, bins = group_by_difficulty(test), phenomena_bins(task.max_train_d)
    return setup, task, [test[i] for b in bins for i in by_bin[b][n_grid[b]:2 * n_grid[b]]], {b: n_grid[b] for b in bins}


def main(out, seed, temperature, draw=0):
    setup, task, held_out, per_bin = held_out_setup(out, seed, temperature)
    bins = sorted(per_bin)
    torch.manual_seed(seed + 1000 * draw)
    with torch.no_grad(), autocast(torch.device("cpu")):
        rows = search.run_grid(setup, list(search.SAMPLED), [1, 4, 16, 64], held_out, task, per_bin)
        rows += [r for r in search.run_grid(setup, ["beam", "mcts"], [4, 16], held_out, task, per_bin) if r["method"] != "greedy"]
    pooled = {}
    for r in rows:
        p = pooled.setdefault((r["method"], r["budget"]), {"correct": [], "tokens": []})
        p["correct"] += r["correct"]
        p["tokens"] += r["tokens"]
    print(f"seed {seed}, draw {draw}, temperature {temperature}, held-out problems of d = {bins}, pooled:")
    for (m, n), p in pooled.items():
        print(f"  {m:>14} N={n:<3} {sum(p['correct']) / len(p['correct']):.3f} ({sum(p['tokens']) / len(p['tokens']):.0f} tokens)")
    verdicts = {}
    for a, na, b, nb in ROWS:
        diff = paired_difference(pooled[(a, na)]["correct"], pooled[(b, nb)]["correct"])
        verdicts[f"{a}@{na} - {b}@{nb}"] = diff
        print(f"  {a}@{na} - {b}@{nb}: {diff[0]:+.3f} ({diff[1]:+.3f}, {diff[2]:+.3f})")
    os.makedirs(os.path.join(os.path.dirname(__file__), "runs"), exist_ok=True)
    name = f"temperature_seed{seed}_t{temperature}" + (f"_draw{draw}" if draw else "") + ".json"
    with open(os.path.join(os.path.dirname(__file__), "runs", name), "w") as f:
        json.dump({"out": out, "seed": seed, "draw": draw, "temperature": temperature, "verdicts": verdicts,
                   "pooled": {f"{m}@{n}": p for (m, n), p in pooled.items()}}, f)


def summary():
    runs = defaultdict(list)
    for name in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "runs", "temperature_*.json"))):
        run = json.load(open(name))
        runs[(run["seed"], run["temperature"])].append(run["pooled"])
    for (seed, temperature), draws in sorted(runs.items()):
        mean = lambda key: [sum(c) / len(draws) for c in zip(*(d[key]["correct"] for d in draws))]  # noqa: E731
        cells = []
        for a, na, b, nb in ROWS:
            diff = paired_difference(mean(f"{a}@{na}"), mean(f"{b}@{nb}"))
            cells.append(f"{a}@{na} - {b}@{nb} {diff[0]:+.3f} ({diff[1]:+.3f}, {diff[2]:+.3f})")
        accuracy = {k: sum(mean(k)) / len(mean(k)) for k in ("greedy@1", "majority@1", "bon-prm@16", "pass@n@16", "pass@n@64")}
        print(f"seed {seed}, T = {temperature}, {len(draws)} draws: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
        print("  " + "\n  ".join(cells))


if __name__ == "__main__" and sys.argv[1:] == ["summary"]:
    summary()
elif __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), *map(int, sys.argv[4:]))
