"""The table of results/verifiers/labels.sh: per label source, per difficulty bin, the PRM's step
AUROC against the oracle, its outcome AUROC, how often the first wrong step is the one it locates
(train_prm.located_first_error) and its lowest-scored, what PRM best-of-16 buys on the grid's
problems, and what the labels cost in generated tokens; then, on the same samples, run.sh's own PRM
(oracle labels, all its problems), the policy's confidence and the ORM.

    python results/verifiers/labels_summary.py out/tiny
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

from report import claim, grid_outcomes  # noqa: E402


def load(path):
    with open(path) as f:
        return json.load(f)


def main(out):
    runs = [(name, os.path.join(out, "prm_labels", name)) for name in ("oracle", "mc-hard", "mc-soft")]
    runs = [(name, d) for name, d in runs if os.path.exists(os.path.join(d, "prm", "metrics.json"))]
    if not runs:
        sys.exit(f"error: no runs in {out}/prm_labels: run bash results/verifiers/labels.sh {out}")
    print("| labels | d | step AUROC | outcome AUROC (weakest step) | first error located | lowest | PRM best-of-16 (problems) | "
          "label tokens generated |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def line(name, b, row, key, outcome, best="-", tokens=0):  # one verifier (key: prm or confidence) on one bin
        print(f"| {name} | {b} | {row[f'step_auroc_{key}']:.3f} | {row[outcome]:.3f} | "
              f"{row.get(f'{key}_first_error_located_rate', float('nan')):.3f} | {row[f'{key}_first_error_lowest_rate']:.3f} | "
              f"{best} | {tokens} |")

    for name, d in runs:
        m = load(os.path.join(d, "prm", "metrics.json"))
        grid = load(os.path.join(d, "search", "scaling.json")) if os.path.exists(os.path.join(d, "search", "scaling.json")) else []
        bon = {r["difficulty"]: r for r in grid if r["method"] == "bon-prm" and r["budget"] == 16}
        for b, row in m["verifiers_by_difficulty"].items():
            g = bon.get(int(b))
            line(name, b, row, "prm", "outcome_auroc_prm", f"{g['accuracy']:.3f} ({g['problems']})" if g else "-",
                 m["monte_carlo_label_tokens"])
    pipeline = os.path.join(out, "prm", "metrics.json")  # judged on the same samples (train_prm.EVAL_STREAM)
    if os.path.exists(pipeline):
        m = load(pipeline)
        rows = m["verifiers_by_difficulty"].items()
        for b, row in rows:
            line(f"oracle, {m['train_solutions']} problems (run.sh's PRM)", b, row, "prm", "outcome_auroc_prm")
        for b, row in rows:
            line("none: the policy's confidence", b, row, "confidence", "outcome_auroc_confidence")
        for b, row in rows:
            print(f"| outcome: the ORM ({m['train_solutions']} problems) | {b} | - | {row['outcome_auroc_orm']:.3f} | - | - | - | 0 |")
    outcomes = {}  # label source -> {problem: right} of PRM best-of-16 on d = 2, 3
    for name, d in runs:
        path = os.path.join(d, "search", "scaling.json")
        outcomes[name] = grid_outcomes(load(path), "bon-prm", 16, [2, 3]) if os.path.exists(path) else None
    for name in [n for n, _ in runs if n != "oracle" and outcomes.get(n) and outcomes.get("oracle")]:
        c = claim("", "", outcomes["oracle"], "", outcomes[name])
        print(f"\nPRM best-of-16 on d = 2, 3 ({c['problems']} problems), oracle labels - {name} labels: "
              f"{c['difference']:+.3f} ({c['interval'][0]:+.3f}, {c['interval'][1]:+.3f})")
    m = load(os.path.join(runs[0][1], "prm", "metrics.json"))
    print(f"\nMonte Carlo against the oracle on {m['monte_carlo_agreement'][0]['steps']} steps (the policy's solutions):\n")
    print("| M | hard-label agreement | false positives | false negatives | soft-label AUROC | tokens per step |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in m["monte_carlo_agreement"]:
        print(f"| {r['rollouts']} | {r['hard_agreement']:.3f} | {r['hard_false_positive_rate']:.3f} | {r['hard_false_negative_rate']:.3f} | "
              f"{r['soft_auroc']:.3f} | {r['generated_tokens_per_step']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/tiny")
