"""The o1 report: every stage's numbers from DIR/*/metrics.json and the search grids, in one
markdown file (DIR/report.md). run.sh ends with it; it reads JSON files only, trains nothing.

    python report.py --out out/tiny

Sections: greedy accuracy per difficulty bin after each stage; the PRM (step AUROC, best-of-N);
the test-time compute grids of the SFT and the RL policy; compute, train-time against test-time,
in FLOPs (6 x parameters per trained token, 2 x parameters per generated or scored token, the
usual estimate of Kaplan et al. 2020); wall time per stage.
"""
import json
import os
import time

from common import Parser, UserError, run_cli

STAGES = ("sft", "prm", "rl", "search", "search_rl")


def load(out, stage, name="metrics.json"):
    path = os.path.join(out, stage, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def pct(x):
    return "n/a" if x is None else f"{x:.3f}"


def accuracy_section(metrics):
    """Greedy accuracy per bin of every policy that was evaluated."""
    policies = [(name, m["accuracy_by_difficulty"]) for name, m in
                (("SFT", metrics["sft"]), ("RL", metrics["rl"])) if m and "accuracy_by_difficulty" in m]
    if not policies:
        return "No stage has been evaluated yet."
    bins = sorted({int(b) for _, acc in policies for b in acc})
    rows = [[name] + [pct(acc.get(str(b))) for b in bins] for name, acc in policies]
    return table(["policy"] + [f"d={b}" for b in bins], rows)


def prm_section(prm):
    if not prm:
        return "No PRM yet (python train_prm.py)."
    lines = [f"Step AUROC against the oracle labels: {pct(prm['step_auroc'])} on the training difficulties; by bin: "
             + ", ".join(f"d={b} {pct(v)}" for b, v in prm["step_auroc_by_difficulty"].items()) + ".",
             f"The first wrong step is the lowest-scored one in {pct(prm['first_error_lowest_rate'])} of the solutions "
             f"(chance {pct(prm['first_error_lowest_chance'])}).", ""]
    rows = prm["best_of_n"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = {(r["difficulty"], r["budget"], r["method"]): r["accuracy"] for r in rows}
    keys = sorted({(r["difficulty"], r["budget"]) for r in rows if r["method"] != "greedy"})
    lines.append(table(["d", "N"] + methods, [[d, n] + [pct(cells.get((d, n, m), cells.get((d, 1, m))))
                                                       for m in methods] for d, n in keys]))
    return "\n".join(lines)


def grid_section(out, stage):
    path = os.path.join(out, stage, "scaling.md")
    if not os.path.exists(path):
        return f"No grid yet ({stage})."
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("#") else lines).strip()


def compute_section(metrics):
    """Train-time FLOPs of each stage, test-time FLOPs per problem of each search method and budget."""
    sft = metrics["sft"]
    if not sft or "params" not in sft:
        return "No SFT run yet."
    params = sft["params"]
    lines = []
    train_rows = [[stage, f"{6 * params * m['train_tokens']:.2e}"] for stage, m in metrics.items()
                  if isinstance(m, dict) and m.get("train_tokens")]
    if train_rows:
        lines += ["Training (6 x parameters x tokens trained on):", "", table(["stage", "FLOPs"], train_rows), ""]
    for stage in ("search", "search_rl"):
        rows = load_rows(metrics, stage)
        cost = {}  # (method, budget) -> tokens per problem in each bin
        for r in rows:
            cost.setdefault((r["method"], r["budget"]), []).append(r["generated_tokens"] + r.get("scored_tokens", 0))
        if cost:
            lines += [f"Inference per problem, {stage} (2 x parameters x (generated + PRM-read tokens), mean over bins):",
                      "", table(["method", "budget", "FLOPs per problem"],
                                [[m, n, f"{2 * params * sum(t) / len(t):.2e}"] for (m, n), t in cost.items()]), ""]
    return "\n".join(lines) if lines else "No token counts recorded yet."


def load_rows(metrics, stage):
    return metrics.get(f"{stage}_rows") or []


def main(argv=None):
    parser = Parser(description=__doc__)
    parser.add_argument("--out", required=True, help="the run directory (out/PRESET)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.out):
        raise UserError(f"no run directory {args.out}: run bash run.sh first")
    metrics = {stage: load(args.out, stage) for stage in STAGES}
    for stage in ("search", "search_rl"):
        metrics[f"{stage}_rows"] = load(args.out, stage, "scaling.json")
    walls = [[stage, f"{m['wall_time_s']:.0f}"] for stage, m in metrics.items()
             if isinstance(m, dict) and "wall_time_s" in m]
    preset = next((m["preset"] for m in metrics.values() if isinstance(m, dict) and "preset" in m), "?")
    device = next((m["device"] for m in metrics.values() if isinstance(m, dict) and "device" in m), "?")
    text = "\n\n".join([
        f"# o1 report: preset {preset}, device {device}, written {time.strftime('%Y-%m-%d %H:%M')}",
        "## Greedy accuracy per difficulty (fraction of right final answers)", accuracy_section(metrics),
        "## The process reward model", prm_section(metrics["prm"]),
        "## Test-time compute, SFT policy", grid_section(args.out, "search"),
        "## Test-time compute, RL policy", grid_section(args.out, "search_rl"),
        "## Compute: train time against test time", compute_section(metrics),
        "## Wall time per stage (seconds)", table(["stage", "seconds"], walls) if walls else "-",
    ]) + "\n"
    path = os.path.join(args.out, "report.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"report: {path}")


if __name__ == "__main__":
    run_cli(main)
