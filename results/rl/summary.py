"""The tables of results/rl/sweep.sh: for each RL run, greedy accuracy per difficulty bin, SFT ->
RL on the same test problems, with the 95% paired interval of the change; and for RL from the
self-correction policy, accuracy and back-token use before and after. The second argument names
the folder of runs: rl_sweep (results/rl/sweep.sh, the default) or rl_long (results/rl/long.sh).

    python results/rl/summary.py out/tiny [rl_sweep]
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


def main(out, runs_dir="rl_sweep"):
    sweep = os.path.join(out, runs_dir)
    runs = []
    for name in sorted(os.listdir(sweep)) if os.path.isdir(sweep) else []:
        path = os.path.join(sweep, name, "rl", "metrics.json")
        if os.path.exists(path):
            with open(path) as f:
                runs.append((name, json.load(f)))
    if not runs:
        sys.exit(f"error: no runs in {sweep}: run results/rl/sweep.sh (rl_sweep) or long.sh (rl_long) on {out} first")
    bins = sorted({int(d) for _, m in runs for d in m["accuracy_by_difficulty"]})
    print("Greedy accuracy, SFT -> RL, and the change with its 95% paired interval; the policy kept: the last "
          "one, or validation's best if the run was stopped (iteration 0 is the SFT policy; a run cut short ran fewer than asked).\n")
    print("| run | lr | rollouts x iterations run | kept iteration | " + " | ".join(f"d={d}" for d in bins) + " |")
    print("|---|---:|---|---:|" + "---|" * len(bins))
    for name, m in runs:
        ran = sum(h["phase"] == "policy" for h in m["training_log"])
        print(f"| {m['algo']}, {m['reward']} | {m['hyperparameters']['lr']:g} | {m['rollouts_per_iteration']} x {ran} | "
              f"{m['kept_iteration']} | " + " | ".join(change(m["before"], m, d) for d in bins) + " |")
    sc_path = next((os.path.join(out, "selfcorrect", n, "metrics.json") for n in sorted(os.listdir(os.path.join(out, "selfcorrect")))
                    if n.startswith("rl_")), None) if os.path.isdir(os.path.join(out, "selfcorrect")) else None
    if sc_path and os.path.exists(sc_path):
        with open(sc_path) as f:
            m = json.load(f)
        print(f"\nRL ({m['algo']}, {m['reward']}) from the self-correction policy {m['policy']}; kept iteration {m['kept_iteration']}:\n")
        print("| d | greedy accuracy, SFT -> RL (95% paired interval of the change) | solutions using the back token, SFT -> RL |")
        print("|---:|---|---|")
        for d in bins:
            k = str(d)
            print(f"| {d} | {change(m['before'], m, d)} | {m['before']['back_rate_by_difficulty'][k]:.3f} -> "
                  f"{m['back_rate_by_difficulty'][k]:.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:3] if len(sys.argv) > 1 else ["out/tiny"])
