"""How much draw noise does judging a budget on every disjoint group of its pool remove?

The grid draws one pool of 64 samples per problem. Budget n used to be judged on the pool's first
n samples only (one best-of-n per problem); now on the mean over the pool's 64 / n disjoint groups
of n (search.run_sampled's rate). On the same pools, this prints both estimates of the report's
rows that compare sampled methods, with their paired 95% intervals, for two draws of the pool:
an estimator with less draw noise moves less between the draws and has a narrower interval.

    OMP_NUM_THREADS=1 python results/search/groups.py out/tiny 0 DRAW [T [AGGREGATE]]    # DRAW 0 and 1
    (held-out problems; T: the sampling temperature, default the grid's; AGGREGATE: a chain's PRM
    score from its steps', min (default), prod or last; writes
    results/search/runs/groups_seed{S}_draw{D}[_t{T}][_{AGGREGATE}].json)
    python results/search/groups.py summary    # per seed: how far each estimate moved between draws 0 and 1
"""
import json
import os
import sys
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search  # noqa: E402
from common import PRESETS, autocast, paired_difference  # noqa: E402
from data.task import parse_problem, prompt_text, values  # noqa: E402
from data.tokenizer import encode  # noqa: E402
from temperature import ROWS, held_out_setup  # noqa: E402

BUDGETS = [1, 4, 16, 64]


def estimates(setup, task, records, per_bin):
    """{"first": ..., "mean": ...}: per method@n, each problem's outcome on the pool's first group of
    n (0/1), and the fraction of its disjoint groups of n that picked the right answer."""
    out = {"first": defaultdict(list), "mean": defaultdict(list)}
    for b in sorted(per_bin):
        mine = [r for r in records if r["difficulty"] == b][:per_bin[b]]
        problems = [parse_problem(r["problem"], task.p) for r in mine]
        prompts = [encode(prompt_text(r["problem"])) for r in mine]
        truth = [values(pr, task.p)[pr.query] for pr in problems]
        greedy = [int(o.answer == t) for o, t in zip(search.run_method(setup, "greedy", prompts, problems, 1), truth)]
        out["first"]["greedy@1"] += greedy
        out["mean"]["greedy@1"] += greedy
        for n, methods in search.run_sampled(setup, list(search.SAMPLED), prompts, problems, BUDGETS).items():
            for m, outcomes in methods.items():
                out["first"][f"{m}@{n}"] += [int(o.answer == t) for o, t in zip(outcomes, truth)]
                out["mean"][f"{m}@{n}"] += [o.rate for o in outcomes]
    return out


def main(out, seed, draw, temperature=PRESETS["tiny"].search.temperature, aggregate=None):
    setup, task, held_out, per_bin = held_out_setup(out, seed, temperature)
    setup.args.aggregate = aggregate or setup.args.aggregate
    torch.manual_seed(seed + 1000 * draw)
    with torch.no_grad(), autocast(torch.device("cpu")):
        result = estimates(setup, task, held_out, per_bin)
    print(f"seed {seed}, draw {draw}, held-out problems of d = {sorted(per_bin)}, temperature {setup.args.temperature}, "
          f"aggregate {setup.args.aggregate}:")
    for a, na, b, nb in ROWS:
        if f"{a}@{na}" in result["mean"] and f"{b}@{nb}" in result["mean"]:
            cells = []
            for est in ("first", "mean"):
                d, lo, hi = paired_difference(result[est][f"{a}@{na}"], result[est][f"{b}@{nb}"])
                cells.append(f"{est} {d:+.3f} ({lo:+.3f}, {hi:+.3f}) width {hi - lo:.3f}")
            print(f"  {a}@{na} - {b}@{nb}: " + "; ".join(cells))
    os.makedirs(os.path.join(os.path.dirname(__file__), "runs"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "runs", f"groups_seed{seed}_draw{draw}"
                           + ("" if temperature == PRESETS["tiny"].search.temperature else f"_t{temperature}")
                           + (f"_{aggregate}" if aggregate else "") + ".json"), "w") as f:
        json.dump({"out": out, "seed": seed, "draw": draw, "temperature": setup.args.temperature, **result}, f)


def summary():
    for seed in (0, 1):
        paths = [os.path.join(os.path.dirname(__file__), "runs", f"groups_seed{seed}_draw{d}.json") for d in (0, 1)]
        if not all(map(os.path.exists, paths)):
            continue
        draws = [json.load(open(p)) for p in paths]
        moved, width = {"first": [], "mean": []}, {"first": [], "mean": []}
        for a, na, b, nb in ROWS:
            if f"{a}@{na}" not in draws[0]["mean"] or f"{b}@{nb}" not in draws[0]["mean"]:
                continue
            for est in moved:
                diffs = [paired_difference(r[est][f"{a}@{na}"], r[est][f"{b}@{nb}"]) for r in draws]
                moved[est].append(abs(diffs[0][0] - diffs[1][0]))
                width[est] += [hi - lo for _, lo, hi in diffs]
        print(f"seed {seed}, {len(moved['mean'])} rows: " + "; ".join(
            f"{est}: moved between draws {sum(moved[est]) / len(moved[est]):.3f} on average (at most {max(moved[est]):.3f}), "
            f"mean interval width {sum(width[est]) / len(width[est]):.3f}" for est in moved))


if __name__ == "__main__" and sys.argv[1:] == ["summary"]:
    summary()
elif __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(float, sys.argv[4:5]), *sys.argv[5:6])
