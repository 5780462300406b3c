"""The tables of results/rl/sweep.sh: for each RL run, greedy accuracy per difficulty bin, SFT ->
RL on the same test problems, with the 95% paired interval of the change; and for RL from the
self-correction policy, accuracy and back-token use before and after.

    python results/rl/summary.py out/tiny
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

from report import paired_cell  # noqa: E402


def change(before, after, d):
    """'a -> b, +x (lo, hi)' for bin d: greedy accuracy before and after on the same problems."""
    acc = lambda m: m["accuracy_by_difficulty"][str(d)]  # noqa: E731
    return f"{acc(before):.3f} -> {acc(after):.3f}, {paired_cell(after, before, d)}"


def main(out):
    sweep = os.path.join(out, "rl_sweep")
    runs = []
    for name in sorted(os.listdir(sweep)) if os.path.isdir(sweep) else []:
        path = os.path.join(sweep, name, "rl", "metrics.json")
        if os.path.exists(path):
            with open(path) as f:
                runs.append((name, json.load(f)))
    if not runs:
        sys.exit(f"error: no runs in {sweep}: run bash results/rl/sweep.sh {out}")
    bins = sorted({int(d) for _, m in runs for d in m["accuracy_by_difficulty"]})
    m0 = runs[0][1]
    print(f"Greedy accuracy, SFT -> RL, and the change with its 95% paired interval; {m0['rollouts_per_iteration']} rollouts "
          f"x {m0['iterations']} iterations each; the checkpoint validation chose (iteration 0 is the SFT policy).\n")
    print("| run | chosen iteration | " + " | ".join(f"d={d}" for d in bins) + " |")
    print("|---|---:|" + "---|" * len(bins))
    for name, m in runs:
        print(f"| {m['algo']}, {m['reward']} | {m['best_iteration']} | " + " | ".join(change(m["before"], m, d) for d in bins) + " |")
    sc_path = next((os.path.join(out, "selfcorrect", n, "metrics.json") for n in sorted(os.listdir(os.path.join(out, "selfcorrect")))
                    if n.startswith("rl_")), None) if os.path.isdir(os.path.join(out, "selfcorrect")) else None
    if sc_path and os.path.exists(sc_path):
        with open(sc_path) as f:
            m = json.load(f)
        print(f"\nRL ({m['algo']}, {m['reward']}) from the self-correction policy {m['policy']}; chosen iteration {m['best_iteration']}:\n")
        print("| d | greedy accuracy, SFT -> RL (95% paired interval of the change) | solutions using the back token, SFT -> RL |")
        print("|---:|---|---|")
        for d in bins:
            k = str(d)
            print(f"| {d} | {change(m['before'], m, d)} | {m['before']['back_rate_by_difficulty'][k]:.3f} -> "
                  f"{m['back_rate_by_difficulty'][k]:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/tiny")
