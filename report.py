"""The o1 report: every stage's numbers from DIR/*/metrics.json and the search grids, in one
markdown file (DIR/report.md). run.sh ends with it; it reads JSON files only, trains nothing.

    python report.py --out out/tiny

Sections: greedy accuracy per difficulty bin after each stage; the PRM (step AUROC, best-of-N);
the test-time compute grids of the SFT and the RL policy; compute, train-time against test-time,
in FLOPs (6 x parameters per trained token, 2 x parameters per generated or scored token, the
usual estimate of Kaplan et al. 2020); wall time per stage.
"""
import json
import math
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
    train_rows = [[stage, f"{train_flops(m):.2e}"] for stage, m in metrics.items() if isinstance(m, dict) and train_flops(m)]
    if train_rows:
        lines += ["Training (6 x parameters per trained token, 2 x parameters per sampled or scored token):", "",
                  table(["stage", "FLOPs"], train_rows), ""]
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


def train_flops(m):
    """A stage's training compute as it recorded it (SFT before it did: 6 x params x tokens)."""
    if "train_flops" in m:
        return m["train_flops"]
    return 6 * m["params"] * m["train_tokens"] if "train_tokens" in m and "params" in m else None


# ----------------------------------------------------------------------------- train-time against test-time compute

def sweep(out):
    """The SFT policies of the size sweep (DIR/sft and DIR/sft_wWIDTH), smallest first."""
    names = [n for n in sorted(os.listdir(out)) if n == "sft" or n.startswith("sft_w")]
    found = [(n, load(out, n)) for n in names]
    return sorted([(n, m) for n, m in found if m and "params" in m and train_flops(m)], key=lambda nm: nm[1]["params"])


def power_fit(xs, ys):
    """The exponent b of y = a x^b by least squares on the logs; None with fewer than 3 usable points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 3 or len({x for x, _ in pts}) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def sweep_section(sizes):
    if len(sizes) < 2:
        return "One SFT size so far (train_sft.py --width W adds others)."
    bins = sorted({int(b) for _, m in sizes for b in m["accuracy_by_difficulty"]})
    rows = [[m.get("width", "?"), f"{m['params']:,}", f"{train_flops(m):.2e}"]
            + [pct(m["accuracy_by_difficulty"].get(str(b))) for b in bins] for _, m in sizes]
    fits = []
    for b in bins:
        exponent = power_fit([train_flops(m) for _, m in sizes],
                             [1 - m["accuracy_by_difficulty"].get(str(b), 0.0) for _, m in sizes])
        fits.append(f"d={b} " + ("n/a" if exponent is None else f"{exponent:+.3f}"))
    return "\n".join([table(["width", "parameters", "training FLOPs"] + [f"d={b}" for b in bins], rows), "",
                      "Kaplan-style fit of the error rate, error = a x (training FLOPs)^b; b per bin (negative: "
                      "more compute, fewer errors; n/a: fewer than 3 sizes with an error rate above 0): " + ", ".join(fits) + "."])


def exchange_points(out, sizes, prm):
    """Every grid point of every size with its total compute: training (the policy's, plus the
    reward models' for a method that reads one) and inference over the whole test set
    (2 x params per generated token, 2 x the reward model's params per token it reads)."""
    meta = load(out, "data", "meta.json") or {}
    n_test = meta.get("counts", {}).get("test", 0)
    main = dict(sizes).get("sft")
    reader_params = main["params"] if main else 0  # the PRM and the ORM are the SFT policy's size
    points = []
    for name, m in sizes:
        for r in load(out, "search" if name == "sft" else f"search_{name}", "scaling.json") or []:
            if r["method"] == "pass@n":  # the oracle ceiling, not a method
                continue
            scored = r.get("scored_tokens", 0)
            train = train_flops(m) + (train_flops(prm) if scored and prm else 0)
            inference = n_test * 2 * (m["params"] * r["generated_tokens"] + reader_params * scored)
            points.append({**r, "size": name, "params": m["params"], "flops": train + inference})
    return points


def noise(p, n):
    return math.sqrt(max(p * (1 - p), 1e-9) / max(n, 1))


def exchange_section(points):
    """Per bin: the largest policy's greedy decoding against the best smaller policy with search
    that costs no more in total (training + inference on the test set)."""
    if len({p["size"] for p in points}) < 2:
        return "Needs search grids of two or more SFT sizes (search.py --policy sft_wW)."
    largest = max(p["params"] for p in points)
    rows = []
    for d in sorted({p["difficulty"] for p in points}):
        ref = next((p for p in points if p["params"] == largest and p["difficulty"] == d and p["method"] == "greedy"), None)
        if ref is None:
            continue
        cands = [p for p in points if p["params"] < largest and p["difficulty"] == d and p["flops"] <= ref["flops"]]
        if not cands:
            rows.append([d, f"{pct(ref['accuracy'])} ({ref['flops']:.2e})", "none as cheap", "-"])
            continue
        best = max(cands, key=lambda p: (p["accuracy"], -p["flops"]))
        margin = best["accuracy"] - ref["accuracy"]
        sigma = math.hypot(noise(best["accuracy"], best.get("problems", 1)), noise(ref["accuracy"], ref.get("problems", 1)))
        verdict = ("smaller + search" if margin > 0 else "larger greedy" if margin < 0 else "tie") + \
                  ("" if abs(margin) > 2 * sigma else " (within noise)")
        rows.append([d, f"{pct(ref['accuracy'])} ({ref['flops']:.2e})",
                     f"{best['size']} {best['method']} N={best['budget']}: {pct(best['accuracy'])} ({best['flops']:.2e})", verdict])
    return table(["d", "largest policy, greedy (total FLOPs)", "best smaller policy with search at no more FLOPs", "better"], rows)


def frontier(points):
    """(FLOPs, accuracy) of the points no cheaper point beats: the best accuracy at each compute."""
    best, out = -1.0, []
    for p in sorted(points, key=lambda p: p["flops"]):
        if p["accuracy"] > best:
            best = p["accuracy"]
            out.append((p["flops"], best))
    return out


def plot_compute(sizes, points, path):
    """Greedy accuracy per bin against training FLOPs (the sweep); then, per bin, each size's best
    accuracy at a given total compute over all methods and budgets, its greedy point circled
    (the exchange rate). False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    bins = sorted({int(b) for _, m in sizes for b in m["accuracy_by_difficulty"]})
    fig, axes = plt.subplots(1, 1 + len(bins), figsize=(3.6 * (1 + len(bins)), 3.4), squeeze=False)
    sweep_ax, panels = axes[0][0], axes[0][1:]
    for b in bins:
        sweep_ax.plot([train_flops(m) for _, m in sizes], [m["accuracy_by_difficulty"].get(str(b)) for _, m in sizes],
                      marker="o", label=f"d={b}")
    sweep_ax.set(xscale="log", xlabel="SFT training FLOPs", ylabel="greedy accuracy", title="size sweep")
    sweep_ax.legend(fontsize=7)
    for ax, b in zip(panels, bins):
        for name, m in sizes:
            mine = [p for p in points if p["size"] == name and p["difficulty"] == b]
            if not mine:
                continue
            xs, ys = zip(*frontier(mine))
            line, = ax.step(xs, ys, where="post", marker=".", label=f"width {m.get('width', name)}")
            greedy = [p for p in mine if p["method"] == "greedy"]
            ax.scatter([p["flops"] for p in greedy], [p["accuracy"] for p in greedy], s=60, facecolors="none",
                       edgecolors=line.get_color())
        ax.set(xscale="log", xlabel="total FLOPs (train + test set)", title=f"d={b}: best at a compute")
    panels[0].set_ylabel("accuracy")
    panels[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def self_correction_section(out):
    """SFT on the same task with and without self-correction traces (DIR/selfcorrect), same size."""
    sc_dir = os.path.join(out, "selfcorrect")
    names = [n for n in sorted(os.listdir(sc_dir)) if (n == "sft" or n.startswith("sft_w"))] if os.path.isdir(sc_dir) else []
    pairs = [(n, load(out, n), load(sc_dir, n)) for n in names]
    pairs = [(n, a, b) for n, a, b in pairs if a and b]
    if not pairs:
        return "No self-correction run yet (data/prepare.py --self-correct RATE, then train_sft.py, into DIR/selfcorrect)."
    rate = (load(sc_dir, "data", "meta.json") or {}).get("self_correct", "?")
    lines = [f"Training traces with a wrong step taken back at rate {rate} per step; greedy decoding on the same test bins.", ""]
    for name, without, with_ in pairs:
        backs = with_.get("back_rate_by_difficulty", {})
        rows = [[d, pct(without["accuracy_by_difficulty"].get(d)), pct(a), pct(backs.get(d))]
                for d, a in with_["accuracy_by_difficulty"].items()]
        lines += [f"{name} (width {with_.get('width', '?')}):", "",
                  table(["d", "without", "with self-correction", "solutions that use the back token"], rows), ""]
    return "\n".join(lines).strip()


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
    sizes = sweep(args.out)
    points = exchange_points(args.out, sizes, metrics["prm"])
    plotted = len(sizes) > 1 and plot_compute(sizes, points, os.path.join(args.out, "compute.png"))
    extra = [n for n, _ in sizes if n != "sft"]  # the sweep, its grids, the self-correction run
    sc_dir = os.path.join(args.out, "selfcorrect")
    extra += [f"search_{n}" for n in extra]
    extra += [os.path.join("selfcorrect", n) for n in sorted(os.listdir(sc_dir)) if n.startswith("sft")] if os.path.isdir(sc_dir) else []
    timed = [(stage, m) for stage, m in metrics.items() if isinstance(m, dict)] + [(n, load(args.out, n)) for n in extra]
    walls = [[stage, f"{m['wall_time_s']:.0f}"] for stage, m in timed if m and "wall_time_s" in m]
    preset = next((m["preset"] for m in metrics.values() if isinstance(m, dict) and "preset" in m), "?")
    device = next((m["device"] for m in metrics.values() if isinstance(m, dict) and "device" in m), "?")
    text = "\n\n".join([
        f"# o1 report: preset {preset}, device {device}, written {time.strftime('%Y-%m-%d %H:%M')}",
        "## Greedy accuracy per difficulty (fraction of right final answers)", accuracy_section(metrics),
        "## The process reward model", prm_section(metrics["prm"]),
        "## Test-time compute, SFT policy", grid_section(args.out, "search"),
        "## Test-time compute, RL policy", grid_section(args.out, "search_rl"),
        "## Compute: train time against test time", compute_section(metrics),
        "## Model size: greedy accuracy against training compute", sweep_section(sizes),
        "## The exchange rate: a smaller model with search against a larger one with greedy decoding",
        exchange_section(points) + (f"\n\n![compute](compute.png)" if plotted else ""),
        "## Self-correction", self_correction_section(args.out),
        "## Wall time per stage (seconds)", table(["stage", "seconds"], walls) if walls else "-",
    ]) + "\n"
    path = os.path.join(args.out, "report.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"report: {path}")


if __name__ == "__main__":
    run_cli(main)
