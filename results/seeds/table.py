"""The verdict rows of several seeds' runs side by side: which o1 phenomena hold beyond the committed two.

    python results/seeds/table.py out/tiny out/tiny_seed1 out/tiny_seed2 out/tiny_seed3

Per run directory, report.py's own claims (A - B on the phenomena bins, its 95% paired interval and
verdict), then over the runs: how many read shown, within noise and not shown. Also each run's SFT greedy
accuracy and the PRM's step AUROC per bin, where the rows come from.
"""
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from report import change, judge  # noqa: E402


def main(runs):
    if not runs or runs[0] in ("-h", "--help"):
        sys.exit(__doc__)
    missing = [run for run in runs if not os.path.exists(os.path.join(run, "data", "meta.json"))]
    if missing:
        sys.exit(f"error: {', '.join(missing)}: not a run directory (no data/meta.json): run bash run.sh first")
    meta = json.load(open(os.path.join(runs[0], "data", "meta.json")))
    judged = [judge(run, meta["task"]["max_train_d"]) for run in runs]
    names = [os.path.basename(os.path.normpath(run)) for run in runs]
    print("| phenomenon | A | B | " + " | ".join(names) + " | shown / within noise / not shown |")
    print("|---|---|---|" + "---|" * len(runs) + "---|")
    for i, c in enumerate(judged[0]):
        mine = [claims[i] for claims in judged]
        cells = [f"{change(m['difference'], *m['interval'])} *{m['verdict']}*"
                 if "difference" in m else f"*{m['verdict']}*" for m in mine]
        count = Counter(m["verdict"] for m in mine)
        print(f"| {c['phenomenon']} | {c['a']} | {c['b']} | " + " | ".join(cells)
              + f" | {count['shown']} / {count['within noise']} / {count['not shown']} |")
    print()
    print("| run | SFT greedy d = 1..5 | PRM step AUROC d = 1..5 | right steps in the PRM's training samples |")
    print("|---|---|---|---:|")
    for run, name in zip(runs, names):
        sft = json.load(open(os.path.join(run, "sft", "metrics.json")))
        prm = json.load(open(os.path.join(run, "prm", "metrics.json")))
        greedy = " / ".join(f"{v:.3f}" for _, v in sorted(sft["accuracy_by_difficulty"].items()))
        auroc = " / ".join(f"{v:.3f}" for _, v in sorted(prm["step_auroc_by_difficulty"].items()))
        print(f"| {name} | {greedy} | {auroc} | {prm['train_step_right_fraction']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
