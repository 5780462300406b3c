"""How much a verdict of the search grid moves between sampling draws: the same policy, PRM and
test problems, the grid run again with other sampling seeds (search.py --seed). Per draw, each
search row of report.py's verdict table; then the draws pooled: each problem's outcome averaged
over the draws before the paired bootstrap, which shrinks the samples' share of the noise (not
the problems').

    python results/verifiers/draws.py out/tiny /tmp/draws/tiny_100 /tmp/draws/tiny_101
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

from common import paired_difference, phenomena_bins, verdict  # noqa: E402
from report import grid_outcomes, judge  # noqa: E402


def rows(run, max_train_d):
    """The verdict table's rows that the SFT policy's search grid alone decides (B is one of its methods)."""
    return [c for c in judge(run, max_train_d) if c["b"] == "greedy" or "best-of-" in c["b"] or c["b"].startswith("majority of")]


def labelled(claim):
    """'A - B' from a claim's labels, e.g. 'mcts at N=16 - PRM best-of-16'."""
    return f"{claim['a']} - {claim['b']}"


def outcomes_of(run, label, bins):
    """{problem: 0/1} of a grid's method named as in the verdict table ('PRM best-of-16', 'mcts at N=16')."""
    names = {"majority of": "majority", "ORM best-of-": "bon-orm", "PRM best-of-": "bon-prm", "confidence best-of-": "bon-confidence"}
    with open(os.path.join(run, "search", "scaling.json")) as f:
        grid = json.load(f)
    if label == "greedy":
        return grid_outcomes(grid, "greedy", 1, bins)
    if " at N=" in label:
        method, n = label.split(" at N=")
        return grid_outcomes(grid, method, int(n), bins)
    prefix = next(p for p in names if label.startswith(p))
    return grid_outcomes(grid, names[prefix], int(label[len(prefix):].strip()), bins)


def main(runs):
    with open(os.path.join(runs[0], "data", "meta.json")) as f:
        max_train_d = json.load(f)["task"]["max_train_d"]
    bins = phenomena_bins(max_train_d)
    judged = [rows(run, max_train_d) for run in runs]
    print(f"d = {', '.join(map(str, bins))} pooled; A - B (95% paired interval), verdict; one column per draw, then "
          f"the {len(runs)} draws pooled (each problem's outcome averaged over them).\n")
    names = ["run.sh's draw"] + [os.path.basename(os.path.normpath(r)) for r in runs[1:]]
    print("| phenomenon | A - B | " + " | ".join(names) + " | pooled |")
    print("|---|---|" + "---|" * (len(runs) + 1))
    for i, c in enumerate(judged[0]):
        cells = [f"{m[i]['difference']:+.3f} ({m[i]['interval'][0]:+.3f}, {m[i]['interval'][1]:+.3f}) {m[i]['verdict']}" for m in judged]
        a = [outcomes_of(r, m[i]["a"], bins) for r, m in zip(runs, judged)]
        b = [outcomes_of(r, m[i]["b"], bins) for r, m in zip(runs, judged)]
        ids = sorted(set.intersection(*(set(x) for x in a + b)))
        mean = lambda draws, p: sum(d[p] for d in draws) / len(draws)  # noqa: E731
        diff, lo, hi = paired_difference([mean(a, p) for p in ids], [mean(b, p) for p in ids])
        print(f"| {c['phenomenon']} | {labelled(c)} | " + " | ".join(cells) + f" | {diff:+.3f} ({lo:+.3f}, {hi:+.3f}) {verdict(lo, hi)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
