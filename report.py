"""The o1 report: every stage's numbers from DIR/*/metrics.json and the search grids, in one
markdown file (DIR/report.md). run.sh ends with it; it reads JSON files only, trains nothing.

    python report.py --out out/tiny

It opens with the o1 phenomena judged: each a claim "A beats B" on the same test problems, with
the 95% paired bootstrap interval of the difference and a verdict computed from the per-problem
outcomes the stages wrote, one column per seed run found beside DIR (DIR_seed1, ...).
Then: greedy accuracy per difficulty bin after each stage; the PRM (step AUROC, best-of-N);
the test-time compute grids of the SFT and the RL policy (their tables and plots are made here,
from search.py's scaling.json); RL against SFT and its training curves; compute, train-time against test-time,
in FLOPs (6 x parameters per trained token, 2 x parameters per generated or scored token, the
usual estimate of Kaplan et al. 2020); where run.sh's time went; wall time per stage.
"""
import json
import math
import os
import re
import time
from collections import defaultdict

from common import Parser, UserError, flops, fmt, paired_difference, phenomena_bins, run_cli, verdict
from plots import plot_compute, plot_grid, plot_rl

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


def change(diff, lo, hi):
    """A difference with its 95% interval: +0.070 (+0.010, +0.130)."""
    return f"{diff:+.3f} ({lo:+.3f}, {hi:+.3f})"


def accuracy_section(metrics):
    """Greedy accuracy per bin of every policy that was evaluated, with its 95% interval and n."""
    policies = [(name, m) for name, m in (("SFT", metrics["sft"]), ("RL", metrics["rl"])) if m and "accuracy_by_difficulty" in m]
    if not policies:
        return "No stage has been evaluated yet."
    bins = sorted({int(b) for _, m in policies for b in m["accuracy_by_difficulty"]})
    rows = [[name] + [with_interval(m, str(b)) for b in bins] for name, m in policies]
    return table(["policy"] + [f"d={b}" for b in bins], rows) + "\n\nEach cell: accuracy (95% Wilson interval), n problems."


def with_interval(m, b):
    acc = m["accuracy_by_difficulty"].get(b)
    if acc is None or "interval_by_difficulty" not in m:
        return fmt(acc)
    lo, hi = m["interval_by_difficulty"][b]
    return f"{acc:.3f} ({lo:.2f}-{hi:.2f}), {m['problems_by_difficulty'][b]}"


def prm_section(prm, grid):
    """The verifiers head to head on the same samples (step and outcome AUROC, the first error),
    and what each buys at the grid's common N (search.py's best-of-N on its own samples)."""
    if not prm or "verifiers_by_difficulty" not in prm:
        return "No PRM yet (python train_prm.py)."
    n = common_budget(grid)
    at = {(r["method"], r["difficulty"]): r for r in grid if r["budget"] == n}
    picks = [("bon-prm", "PRM"), ("bon-orm", "ORM"), ("bon-confidence", "confidence"), ("majority", "majority"),
             ("pass@n", f"pass@{n}")]

    def cell(method, b):
        r = at.get((method, int(b)))
        return f"{r['accuracy']:.2f} ({r['interval'][0]:.2f}-{r['interval'][1]:.2f})" if r else "n/a"

    def gap(r):  # PRM - confidence step AUROC, with its paired interval over problems
        return change(*r["step_auroc_prm_minus_confidence"]) if r.get("step_auroc_prm_minus_confidence") else "n/a"

    rows = [[b, r["samples"], fmt(r["step_auroc_prm"]), fmt(r["step_auroc_confidence"]), gap(r), fmt(r["outcome_auroc_orm"]),
             fmt(r["outcome_auroc_prm"]), fmt(r.get("prm_first_error_located_rate")), fmt(r.get("confidence_first_error_located_rate")),
             fmt(r["prm_first_error_lowest_rate"]), fmt(r["prm_first_error_found_rate"])] + [cell(m, b) for m, _ in picks]
            for b, r in prm["verifiers_by_difficulty"].items()]
    header = ["d", "samples", "step AUROC PRM", "confidence", "PRM - confidence (95% interval)", "outcome AUROC ORM", "PRM", "first error located PRM",
              "confidence", "PRM's lowest", "PRM's first < 1/2"] + [f"best-of-{n} {name}" for _, name in picks]
    return "\n".join([f"The PRM learned from {prm['labels']} labels on {prm['train_solutions']} of the policy's own solutions "
                      f"(every token labelled; a step scores its weakest token). AUROC against the oracle, on "
                      f"{prm['eval_samples_per_problem']} samples of the SFT policy per test problem (temperature "
                      f"{prm['temperature']}); the PRM's lead over the confidence with its 95% interval, resampling "
                      f"problems. The first error: of the solutions with one, how often the first wrong "
                      f"step is the one a verifier locates (the largest drop of its running lowest score: its most likely "
                      f"first error), the PRM's lowest-scored step (a later step, also labelled wrong, may rightly score "
                      f"lower) and the PRM's first step below 1/2. Best-of-{n} from the search grid, with 95% intervals:", "",
                      table(header, rows)])


def compute_optimal_section(grid, bins):
    """Per bin: the generated tokens each method needs to reach PRM best-of-N's accuracy at the
    grid's common N (the fewest tokens among its budgets that reach it: no interpolation), and at
    each of best-of-N's token levels the most accurate method within it: which method is
    compute-optimal where (Snell et al. 2024)."""
    if not grid:
        return "No grid yet."
    n = common_budget(grid)
    methods = [m for m in dict.fromkeys(r["method"] for r in grid) if m != "pass@n"]
    lines = []
    for b in bins:
        rows = [r for r in grid if r["difficulty"] == b]
        target = next((r for r in rows if r["method"] == "bon-prm" and r["budget"] == n), None)
        if target is None:
            continue
        cells = []
        for m in methods:
            reach = [r for r in rows if r["method"] == m and r["accuracy"] >= target["accuracy"]]
            best = min(reach, key=lambda r: r["generated_tokens"]) if reach else None
            cells.append([m, f"{best['generated_tokens']:.0f} (N={best['budget']}, {best['accuracy']:.3f})" if best else
                          f"not reached (best {max(r['accuracy'] for r in rows if r['method'] == m):.3f})"])
        levels = sorted((r["generated_tokens"], r["budget"]) for r in rows if r["method"] == "bon-prm")
        optimal = []
        for tokens, budget in levels:
            within = [r for r in rows if r["method"] != "pass@n" and r["generated_tokens"] <= tokens * 1.05]
            top = max(r["accuracy"] for r in within)
            optimal.append(f"{tokens:.0f} tokens (best-of-{budget}): " + ", ".join(
                sorted({f"{r['method']} N={r['budget']}" for r in within if r["accuracy"] == top})) + f" ({top:.3f})")
        lines += [f"d={b}: tokens to reach PRM best-of-{n}'s {target['accuracy']:.3f} ({target['generated_tokens']:.0f} tokens)", "",
                  table(["method", "tokens per problem (budget, accuracy)"], cells), "",
                  "Most accurate within each of best-of-N's token levels (5% slack): " + "; ".join(optimal) + ".", ""]
    return "\n".join(lines).strip()


def grid_section(out, stage, max_train_d):
    """A search grid (DIR/STAGE/scaling.json): its table, and its plot written beside it."""
    rows, m = load(out, stage, "scaling.json"), load(out, stage) or {}
    if not rows:
        return f"No grid yet ({stage})."
    counts = ", ".join(f"d={b}: {n}" for b, n in m.get("problems_per_bin", {}).items())
    plotted = plot_grid(rows, max_train_d, os.path.join(out, stage, "scaling.png"))
    ranked = f" Best-of-N by a reward model ranks by its log-odds + {m['confidence_weight']} x the policy's lowest token " \
        "log-probability." if m.get("confidence_weight") else ""
    draws = f" Beam search and MCTS: the mean of {m['tree_draws']} runs per problem." if m.get("tree_draws", 1) > 1 else ""
    return (f"Policy {m.get('policy', '?')}; test problems per bin {counts}; samples at temperature {m.get('temperature', '?')}.{ranked}{draws}"
            f"\n\n{scaling_table(rows, max_train_d)}" + (f"\n\n![{stage}]({stage}/scaling.png)" if plotted else ""))


def scaling_table(rows, max_train_d):
    """Markdown: accuracy (generated tokens per problem) per method and budget, one column per bin."""
    bins = sorted({r["difficulty"] for r in rows})
    cell = {(r["method"], r["budget"], r["difficulty"]): r for r in rows}
    head = [f"d={d}" + (" (OOD)" if d > max_train_d else "") for d in bins]
    lines = ["accuracy (generated tokens per problem), per difficulty bin; pass@n is the oracle ceiling of best-of-N; a sampled "
             "method at budget n is averaged over the disjoint groups of n in the largest budget's pool of samples", "",
             "| method | budget | " + " | ".join(head) + " | PRM/ORM tokens read |", "|---|---:|" + "---:|" * (len(bins) + 1)]
    for method, budget in dict.fromkeys((r["method"], r["budget"]) for r in rows):
        cells = [f"{cell[method, budget, d]['accuracy']:.3f} ({cell[method, budget, d]['generated_tokens']:.0f})" for d in bins]
        scored = sum(cell[method, budget, d]["scored_tokens"] for d in bins) / len(bins)
        lines.append(f"| {method} | {budget} | " + " | ".join(cells) + f" | {scored:.0f} |")
    lines += ["", "best method per bin and budget (pass@n and greedy left out):", ""]
    for d in bins:
        wins = []
        for budget in sorted({r["budget"] for r in rows if r["method"] not in ("greedy", "pass@n")}):
            cands = [r for r in rows if r["difficulty"] == d and r["budget"] == budget and r["method"] not in ("greedy", "pass@n")]
            top = max(r["accuracy"] for r in cands)
            wins.append(f"N={budget}: {'/'.join(r['method'] for r in cands if r['accuracy'] == top)} ({top:.3f})")
        lines.append(f"- d={d}: " + "; ".join(wins))
    return "\n".join(lines)


def compute_section(metrics):
    """Train-time FLOPs of each stage, test-time FLOPs per problem of each search method and budget."""
    sft = metrics["sft"]
    if not sft or "params" not in sft:
        return "No SFT run yet."
    params = flop_params(sft)
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
                                [[m, n, f"{flops(params, forward_tokens=sum(t) / len(t)):.2e}"] for (m, n), t in cost.items()]), ""]
    return "\n".join(lines) if lines else "No token counts recorded yet."


def flop_params(m):
    """A policy's parameters that multiply on every token (model.flop_params; all of them in older runs)."""
    return m.get("flop_params", m["params"])


def train_flops(m):
    """A stage's training compute as it recorded it (SFT before it did: 6 x params x tokens)."""
    if "train_flops" in m:
        return m["train_flops"]
    return flops(flop_params(m), trained_tokens=m["train_tokens"]) if "train_tokens" in m and "params" in m else None


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
            + [fmt(m["accuracy_by_difficulty"].get(str(b))) for b in bins] for _, m in sizes]
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
    reader_params = flop_params(main) if main else 0  # the PRM and the ORM are the SFT policy's size
    points = []
    for name, m in sizes:
        for r in load(out, "search" if name == "sft" else f"search_{name}", "scaling.json") or []:
            if r["method"] == "pass@n":  # the oracle ceiling, not a method
                continue
            scored = r.get("scored_tokens", 0)
            train = train_flops(m) + (train_flops(prm) if scored and prm else 0)
            inference = n_test * (flops(flop_params(m), forward_tokens=r["generated_tokens"]) + flops(reader_params, forward_tokens=scored))
            points.append({**r, "size": name, "params": m["params"], "flops": train + inference})
    return points


def exchange_section(points):
    """Per bin: the largest policy's greedy decoding against the best smaller policy with search
    that costs no more in total (training + inference on the test set), with the paired interval
    of the difference on the same problems."""
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
            rows.append([d, f"{fmt(ref['accuracy'])} ({ref['flops']:.2e})", "none as cheap", "-"])
            continue
        best = max(cands, key=lambda p: (p["accuracy"], -p["flops"]))
        if "correct" in best and "correct" in ref and best["problem"] == ref["problem"]:
            diff, lo, hi = paired_difference(best["correct"], ref["correct"])
            judged = f"{change(diff, lo, hi)}: {verdict(lo, hi)}"
        else:
            judged = f"{best['accuracy'] - ref['accuracy']:+.3f} (no per-problem outcomes: no interval)"
        rows.append([d, f"{fmt(ref['accuracy'])} ({ref['flops']:.2e})",
                     f"{best['size']} {best['method']} N={best['budget']}: {fmt(best['accuracy'])} ({best['flops']:.2e})", judged])
    return table(["d", "largest policy, greedy (total FLOPs)", "best smaller policy with search at no more FLOPs",
                  "smaller - larger (95% paired interval): verdict"], rows)


def paired_cell(a, b, d):
    """A - B on the problems of bin d that both policies' evaluations hold, with the paired interval."""
    c = claim("", "", policy_outcomes(a, [d]), "", policy_outcomes(b, [d]))
    return change(c["difference"], *c["interval"]) if "difference" in c else "-"


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
        rows = [[d, fmt(without["accuracy_by_difficulty"].get(d)), fmt(a), paired_cell(with_, without, int(d)), fmt(backs.get(d))]
                for d, a in with_["accuracy_by_difficulty"].items()]
        lines += [f"{name} (width {with_.get('width', '?')}):", "",
                  table(["d", "without", "with self-correction", "with - without (95% paired interval)",
                         "solutions that use the back token"], rows), ""]
    return "\n".join(lines).strip()


def rl_section(out):
    """RL against SFT per bin on the grids' problems: greedy (pass@1), majority of K (maj@K) and
    pass@K for the budgets K >= 8 both grids ran, with paired intervals (DeepSeekMath, section
    5.2.2: RL raised maj@K, not pass@K: it sharpens what the policy can already sample)."""
    rl, sft_rows, rl_rows = load(out, "rl"), load(out, "search", "scaling.json"), load(out, "search_rl", "scaling.json")
    if not rl:
        return "No RL run yet (train_rl.py)."
    sft = " (the SFT policy: the run was stopped and no RL policy had beaten it on validation; the changes below are two sampling draws of one policy)"
    lines = [f"{rl['algo'].upper()}, reward {rl['reward']}, {rl['iterations']} iterations of {rl['rollouts_per_iteration']} "
             f"rollouts; kept the policy of iteration {rl['kept_iteration']}" + (sft if rl["kept_iteration"] == 0 else "")
             + (f"; {rl['stopped']}" if rl.get("stopped") else "") + ".", ""]
    both = {r["budget"] for r in rl_rows or []} & {r["budget"] for r in sft_rows or []}  # budgets both grids ran
    if both:
        ks = [k for k in sorted(both) if k >= 8] or [max(both)]  # DeepSeekMath's maj@K and pass@K, K = 8 and up
        rows = []
        for d in sorted({r["difficulty"] for r in rl_rows}):
            cells = [d]
            for method, budget in [("greedy", 1)] + [(m, k) for k in ks for m in ("majority", "pass@n")]:
                a, b = grid_outcomes(rl_rows, method, budget, [d]), grid_outcomes(sft_rows, method, budget, [d])
                c = claim("", "", a, "", b)
                cells += [f"{c['accuracy_b']:.3f} -> {c['accuracy_a']:.3f}", change(c["difference"], *c["interval"])] \
                    if "difference" in c else ["-", "-"]
            rows.append(cells)
        header = ["d", "pass@1 (greedy)", "change"] + [h for k in ks for h in (f"maj@{k}", "change", f"pass@{k}", "change")]
        temperature = (load(out, "search_rl") or {}).get("temperature", "?")
        lines += [f"SFT -> RL on the same test problems (samples at temperature {temperature}); change with its 95% paired "
                  "interval:", "",
                  table(header, rows), ""]
    plotted = os.path.exists(os.path.join(out, "rl", "training.png"))
    return "\n".join(lines + (["![RL training](rl/training.png)"] if plotted else [])).strip()


# ----------------------------------------------------------------------------- the o1 phenomena, judged
# Each phenomenon is a claim "A beats B" on the same test problems: the difference of their
# accuracies, pooled over the phenomena bins (common.phenomena_bins: the harder half of the
# training difficulties), with its 95% paired bootstrap interval.
# The verdict is computed (common.verdict), never typed: shown, not shown, within noise.

def grid_outcomes(rows, method, budget, bins):
    """{problem id: right} of one method and budget of a search grid, over the bins; None if absent."""
    mine = [r for r in rows if r["method"] == method and r["budget"] == budget and r["difficulty"] in bins and "correct" in r]
    if not mine:
        return None
    return {p: c for r in mine for p, c in zip(r["problem"], r["correct"])}


def policy_outcomes(metrics, bins):
    """{problem id: right} of a policy's greedy evaluation (metrics["outcomes"]) over the bins."""
    if not metrics or "outcomes" not in metrics:
        return None
    o = metrics["outcomes"]
    return {p: c for p, c, d in zip(o["problem"], o["correct"], o["difficulty"]) if d in bins}


def claim(name, label_a, a, label_b, b, note="", holds=False):
    """One row of the verdict table: A against B on the problems both were run on. holds: the claim
    is that A is not worse than B, so over seeds it holds where no seed's verdict is *not shown*."""
    if not a or not b or not set(a) & set(b):
        return {"phenomenon": name, "a": label_a, "b": label_b, "verdict": "not run", "note": note, "holds": holds}
    ids = sorted(set(a) & set(b))
    xs, ys = [a[i] for i in ids], [b[i] for i in ids]
    diff, lo, hi = paired_difference(xs, ys)
    return {"phenomenon": name, "a": label_a, "b": label_b, "problems": len(ids), "accuracy_a": sum(xs) / len(ids),
            "accuracy_b": sum(ys) / len(ids), "difference": diff, "interval": [lo, hi], "verdict": verdict(lo, hi), "note": note,
            "holds": holds}


def judge(out, max_train_d):
    """Every phenomenon's claim from the run's JSON files, the same list for every run (so seeds line up; *not run* where it cannot)."""
    bins = phenomena_bins(max_train_d)
    grid = load(out, "search", "scaling.json") or []
    n = common_budget(grid) or "N"  # every method ran at this budget
    top = max((r["budget"] for r in grid if r["method"] == "bon-prm"), default="N")  # best-of-N's largest
    at = lambda method, budget=n: grid_outcomes(grid, method, budget, bins)  # noqa: E731
    rl = load(out, "rl")
    claims = [
        claim("accuracy rises with test-time compute", f"PRM-weighted vote of {n}", at("prm-vote"), "greedy", at("greedy", 1)),
        claim("a vote alone, no verifier, beats greedy (self-consistency)", f"majority of {n}", at("majority"), "greedy",
              at("greedy", 1)),
        claim("an outcome verifier picks better than a vote", f"ORM best-of-{n}", at("bon-orm"), f"majority of {n}", at("majority")),
        claim("process reward beats outcome reward", f"PRM best-of-{n}", at("bon-prm"), f"ORM best-of-{n}", at("bon-orm")),
        claim("a trained verifier beats the policy's own confidence", f"PRM best-of-{n}", at("bon-prm"),
              f"confidence best-of-{n}", at("bon-confidence")),
    ]
    # best-of-N beyond the common budget: does selection keep paying, or over-optimise (Gao et al.)?
    beyond, top = top != n, top if top != n else "more"
    up = lambda method: at(method, top) if beyond else None  # noqa: E731  (not run: no budget beyond n)
    claims += [
        claim("accuracy keeps rising with test-time compute", f"PRM-weighted vote of {top}", up("prm-vote"),
              f"PRM-weighted vote of {n}", at("prm-vote")),
        claim("process reward beats outcome reward", f"PRM best-of-{top}", up("bon-prm"), f"ORM best-of-{top}", up("bon-orm")),
        claim("PRM best-of-N holds as N grows", f"PRM best-of-{top}", up("bon-prm"), f"PRM best-of-{n}", at("bon-prm"),
              note=f"PRM best-of-{top} against best-of-{n}: within noise means it holds; not shown, that it falls" if beyond else "",
              holds=True),
        claim("more samples over-optimise the ORM (Gao et al.)", f"ORM best-of-{n}", at("bon-orm"), f"ORM best-of-{top}",
              up("bon-orm")),
    ]
    for method in ("beam", "mcts"):
        matched = matched_budget(grid, method, n, bins)
        tokens = (mean_tokens(grid, method, n, bins), mean_tokens(grid, "bon-prm", matched, bins))
        note = f"{method} at N={n} generated {tokens[0]:.0f} tokens per problem, PRM best-of-{matched} {tokens[1]:.0f}" \
            if None not in tokens else ""
        claims.append(claim("step-level search beats best-of-N at matched tokens", f"{method} at N={n}", at(method),
                            f"PRM best-of-{matched}", at("bon-prm", matched), note=note))
    claims += [half_token_claim(grid, bins, n, at, method) for method in ("beam", "mcts")]
    claims.append(claim("RL raises pass@1", "RL greedy", policy_outcomes(rl, bins), "SFT greedy",
                        policy_outcomes(rl.get("before") if rl else None, bins)))
    sizes = sweep(out)
    width = max((m.get("width", 0) for name, m in sizes if name != "sft"), default="W")
    sc = load(os.path.join(out, "selfcorrect"), f"sft_w{width}")
    claims.append(claim("self-correction traces help", f"SFT w{width} with retries", policy_outcomes(sc, bins),
                        f"SFT w{width} without", policy_outcomes(dict(sizes).get(f"sft_w{width}"), bins)))
    claims.append(exchange_claim(exchange_points(out, sizes, load(out, "prm")), bins))
    return claims


def half_token_claim(grid, bins, n, at, method):
    """Step search at its largest budget that spends at most half of PRM best-of-n's generated
    tokens, against best-of-n (Snell et al.: about 4x less compute for the same accuracy).
    Shown means better; within noise, as good as far as the interval can tell."""
    name = "step-level search at half the tokens of best-of-N"
    half = (mean_tokens(grid, "bon-prm", n, bins) or 0) / 2
    fits = [(b, t) for b in sorted({r["budget"] for r in grid}) if (t := mean_tokens(grid, method, b, bins)) is not None and t <= half]
    if not fits:
        return claim(name, method, None, f"PRM best-of-{n}", None)
    budget, tokens = fits[-1]
    return claim(name, f"{method} at N={budget}", at(method, budget), f"PRM best-of-{n}", at("bon-prm"),
                 note=f"{method} at N={budget} generated {tokens:.0f} tokens per problem, at most half of PRM best-of-{n}'s "
                      f"{2 * half:.0f}; within noise: as accurate as far as the interval can tell")


def matched_budget(grid, method, n, bins):
    """The budget of PRM best-of-N whose tokens are nearest (in ratio) to `method`'s at budget n (n where
    none are recorded): MCTS stops at 8n simulations, short of its tokens, and "matched" is about tokens spent."""
    spent = mean_tokens(grid, method, n, bins)
    options = {b: t for b in sorted({r["budget"] for r in grid if r["method"] == "bon-prm"})
               if (t := mean_tokens(grid, "bon-prm", b, bins))}
    return min(options, key=lambda b: abs(math.log(options[b] / spent))) if spent and options else n


def common_budget(grid):
    """The largest budget every method of the grid ran at (beam and MCTS may stop below best-of-N's
    largest: search.py --max-tree-budget); the verdicts compare methods there. None without a grid."""
    ran = defaultdict(set)
    for r in grid:
        ran[r["method"]].add(r["budget"])
    budgets = set.intersection(*(b for m, b in ran.items() if m != "greedy")) if len(ran) > 1 else set()
    return max(budgets, default=None)


def mean_tokens(grid, method, budget, bins):
    """Generated tokens per problem of one method and budget over the bins; None if it was not run."""
    rows = [r for r in grid if r["method"] == method and r["budget"] == budget and r["difficulty"] in bins]
    return sum(r["generated_tokens"] * r["problems"] for r in rows) / sum(r["problems"] for r in rows) if rows else None


def exchange_claim(points, bins):
    """The largest policy's greedy decoding against the smaller policy and search method that is
    best over the phenomena bins among those whose total compute (training + test set) is no more."""
    name = "a smaller model with search matches a larger one (train/test compute exchange)"
    largest = max((p["params"] for p in points), default=None)
    ref = [p for p in points if p["params"] == largest and p["method"] == "greedy" and p["difficulty"] in bins]
    if not ref or not all("correct" in p for p in ref):
        return claim(name, "smaller + search", None, "larger greedy", None)
    ref_flops = max(p["flops"] for p in ref)
    options = {}
    for p in points:
        if p["params"] < largest and p["difficulty"] in bins and p["flops"] <= ref_flops and "correct" in p:
            options.setdefault((p["size"], p["method"], p["budget"]), []).append(p)
    complete = {k: v for k, v in options.items() if len(v) == len(ref)}  # run on every phenomena bin
    if not complete:
        return claim(name, "smaller + search (none as cheap)", None, "larger greedy", None)
    key = max(complete, key=lambda k: sum(p["accuracy"] * p["problems"] for p in complete[k]))
    outcomes = lambda ps: {i: c for p in ps for i, c in zip(p["problem"], p["correct"])}  # noqa: E731
    return claim(name, f"{key[0]} {key[1]} N={key[2]}", outcomes(complete[key]), "largest greedy", outcomes(ref),
                 note="the best of the cheaper options, picked on these problems: an optimistic comparison")


def seed_runs(out):
    """This run directory and its other seeds (OUT and OUT_seedK side by side), seed 0 first."""
    base = re.sub(r"_seed\d+$", "", os.path.normpath(out))
    parent, name = os.path.split(base)
    seeds = [n for n in os.listdir(parent or ".") if re.fullmatch(re.escape(name) + r"_seed\d+", n)]
    seeds.sort(key=lambda n: int(n.rsplit("_seed", 1)[1]))
    return [d for d in [base] + [os.path.join(parent, n) for n in seeds] if os.path.isdir(d)]


def both(verdicts, holds=False):
    """The verdict over seeds: the same on every seed, else mixed; for a claim that A holds against B,
    seeds that differ between shown and within noise read "holds" (none saw it fall)."""
    if holds and len(set(verdicts)) > 1 and set(verdicts) <= {"shown", "within noise"}:
        return "holds"
    return verdicts[0] if len(set(verdicts)) == 1 else "mixed"


def verdict_section(out, max_train_d):
    runs = seed_runs(out)
    judged = [(run, judge(run, max_train_d)) for run in runs]
    header = ["phenomenon", "A", "B"] + [f"{os.path.basename(run)}: A - B (95% interval), n" for run, _ in judged] \
        + [f"verdict ({os.path.basename(run)})" for run, _ in judged] + (["all seeds"] if len(judged) > 1 else [])
    rows = []
    for i, c in enumerate(judged[0][1]):
        mine = [claims[i] for _, claims in judged]
        cells = [(f"{m['a']} - {m['b']}: " if (m["a"], m["b"]) != (c["a"], c["b"]) else "")  # another N on this seed: say so
                 + (f"{m['accuracy_a']:.3f} - {m['accuracy_b']:.3f} = {change(m['difference'], *m['interval'])}, {m['problems']}"
                    if "difference" in m else "-") for m in mine]
        verdicts = [m["verdict"] for m in mine]
        rows.append([c["phenomenon"], c["a"], c["b"]] + cells + [f"*{v}*" for v in verdicts]
                    + ([f"**{both(verdicts, c.get('holds'))}**"] if len(judged) > 1 else []))
    notes = list(dict.fromkeys(f"{os.path.basename(run)}: {c['note']}" for run, claims in judged for c in claims if c["note"]))
    bins = phenomena_bins(max_train_d)
    return "\n".join([f"Each row: A against B on the same test problems of difficulty {', '.join(map(str, bins))} "
                      "(the harder half of the training range), the difference of their accuracies and its 95% paired "
                      "bootstrap interval. *shown*: the interval is above zero; *not shown*: below (B is better); "
                      "*within noise*: it holds zero; *not run*: a stage is missing. Computed by report.py from the "
                      "stages' JSON files (per-problem outcomes).", "", table(header, rows)]
                     + ([""] + [f"- {note}" for note in notes] if notes else []))


def times_section(out):
    """run.sh's stage times of its last invocation (DIR/run_times.tsv): what ran when, on which lane's clock."""
    path = os.path.join(out, "run_times.tsv")
    if not os.path.exists(path):
        return "No run.sh timing (DIR/run_times.tsv) yet."
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return "Seconds of each stage in the last `bash run.sh`, and when it started (seconds after run.sh did; " \
           "two stages that overlap ran on the two lanes at once). Stages already up to date are not listed.\n\n" \
        + table(["stage", "seconds", "started at"], [[name, secs, start] for name, secs, start in rows])


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
    plotted = len(sizes) > 1 and plot_compute(sizes, [train_flops(m) for _, m in sizes], points, os.path.join(args.out, "compute.png"))
    if metrics["rl"] and metrics["rl"].get("training_log"):
        plot_rl(metrics["rl"], os.path.join(args.out, "rl", "training.png"))
    extra = [n for n, _ in sizes if n != "sft"]  # the sweep, its grids, the self-correction run
    sc_dir = os.path.join(args.out, "selfcorrect")
    extra += [f"search_{n}" for n in extra]
    extra += [os.path.join("selfcorrect", n) for n in sorted(os.listdir(sc_dir)) if n.startswith("sft")] if os.path.isdir(sc_dir) else []
    timed = [(stage, m) for stage, m in metrics.items() if isinstance(m, dict)] + [(n, load(args.out, n)) for n in extra]
    walls = [[stage, f"{m['wall_time_s']:.0f}"] for stage, m in timed if m and "wall_time_s" in m]
    preset = next((m["preset"] for m in metrics.values() if isinstance(m, dict) and "preset" in m), "?")
    device = next((m["device"] for m in metrics.values() if isinstance(m, dict) and "device" in m), "?")
    max_train_d = ((load(args.out, "data", "meta.json") or {}).get("task") or {}).get("max_train_d", 2)
    text = "\n\n".join([
        f"# o1 report: preset {preset}, device {device}, written {time.strftime('%Y-%m-%d %H:%M')}",
        "## The o1 phenomena, judged", verdict_section(args.out, max_train_d),
        "## Greedy accuracy per difficulty (fraction of right final answers)", accuracy_section(metrics),
        "## The verifiers, head to head", prm_section(metrics["prm"], load(args.out, "search", "scaling.json") or []),
        "## Test-time compute, SFT policy", grid_section(args.out, "search", max_train_d),
        "## Compute-optimal test-time search", compute_optimal_section(load(args.out, "search", "scaling.json") or [],
                                                                       phenomena_bins(max_train_d)),
        "## RL: sharpening or learning?", rl_section(args.out),
        "## Test-time compute, RL policy", grid_section(args.out, "search_rl", max_train_d),
        "## Compute: train time against test time", compute_section(metrics),
        "## Model size: greedy accuracy against training compute", sweep_section(sizes),
        "## The exchange rate: a smaller model with search against a larger one with greedy decoding",
        exchange_section(points) + ("\n\n![compute](compute.png)" if plotted else ""),
        "## Self-correction", self_correction_section(args.out),
        "## Where the time goes", times_section(args.out),
        "## Wall time per stage (seconds, from each stage's metrics)", table(["stage", "seconds"], walls) if walls else "-",
    ]) + "\n"
    path = os.path.join(args.out, "report.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"report: {path}")


if __name__ == "__main__":
    run_cli(main)
