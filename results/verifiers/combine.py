"""The PRM and the policy's confidence together: logit(PRM) + w x confidence.

results/verifiers/missed.py finds that the PRM passes copying and arithmetic mistakes the policy's
confidence (its lowest token log-probability so far) sees, and catches the wrong-variable mistakes
the confidence misses. Is their sum a better judge of steps, and does it pick better chains?

  auroc  step AUROC per bin of logit(p_PRM) + w * confidence on train_prm.py's evaluation samples
         (its own draw, 4 samples of 100 test problems a bin, temperature 1), for a range of w
         (w = 0: the PRM alone; w -> infinity: the confidence alone), and at w = 0.25 and 1 the sum
         against each of its parts with 95% paired intervals (common.auroc_difference);
  bon    best-of-N on the held-out grid problems (results/search/groups.py's pool, draw 0), a chain
         scored by logit(its PRM or ORM score) + w * its lowest token log-probability, against each alone.

    OMP_NUM_THREADS=1 python results/verifiers/combine.py auroc out/tiny 0        # and out/tiny_seed1 1
    OMP_NUM_THREADS=1 python results/verifiers/combine.py bon out/tiny 0 1.0
    (bon1: the same with the confidence recomputed at temperature 1, as the step AUROC reads it)
"""
import math
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "results", "search"), os.path.dirname(os.path.abspath(__file__))]
import train_prm as tp  # noqa: E402
from common import PRESETS, auroc_difference, autocast, paired_difference  # noqa: E402
from groups import estimates  # noqa: E402
from missed import evaluation  # noqa: E402
from search import rank_score  # noqa: E402
from temperature import held_out_setup  # noqa: E402

WEIGHTS = (0, 0.1, 0.25, 0.5, 1.0, 2.0, math.inf)


def combined(prm, confidence, w):
    """A step's score: search.py's ranking of a chain, logit(p_PRM) + w x confidence; the confidence alone at w = inf."""
    return confidence if w == math.inf else rank_score(prm, confidence, w)


def auroc(out, seed):
    task, samples = evaluation(out, seed)
    bins = range(1, task.max_eval_d + 1)
    problems = {b: list(tp.problem_steps([s for s in samples if s.difficulty == b]).values()) for b in bins}  # (PRM, confidence, labels)

    def summed(g, w):
        return [combined(p, c, w) for p, c in zip(g[0], g[1])]

    print(f"seed {seed}: step AUROC of logit(PRM) + w * confidence, d = 1..{task.max_eval_d}")
    for w in WEIGHTS:
        row = [tp.auroc([x for g in problems[b] for x in summed(g, w)], [y for g in problems[b] for y in g[2]]) for b in bins]
        print(f"  w = {w:<4}: " + " ".join(f"{a:.3f}" for a in row), flush=True)
    print("  within one problem (the mean over problems whose steps hold both labels of the AUROC among its own"
          " steps: what best-of-N needs):")
    for w in WEIGHTS:
        row = []
        for b in bins:
            within = [tp.auroc(summed(g, w), g[2]) for g in problems[b] if len(set(g[2])) == 2]
            row.append(f"{sum(within) / len(within):.3f} ({len(within)})")
        print(f"  w = {w:<4}: " + " ".join(row), flush=True)
    for w in (0.25, 1.0):  # the sum against each of its parts, 95% paired intervals resampling problems
        for b in bins:
            cells = [auroc_difference([(summed(g, w), g[k], g[2]) for g in problems[b]]) for k in (0, 1)]
            print(f"  w = {w}, d = {b}: sum - PRM " + ", sum - confidence ".join(
                f"{c[0]:+.3f} ({c[1]:+.3f}, {c[2]:+.3f})" for c in cells), flush=True)


def best_of_n(out, seed, w, at_one=False):
    """The same pool (groups.py's draw 0) picked by the PRM and the ORM alone (search.py's
    --confidence-weight 0), and with w x the chain's lowest token log-probability added to their log-odds."""
    setup, task, held_out, per_bin = held_out_setup(out, seed, PRESETS["tiny"].search.temperature)
    if at_one:
        setup.score = confidence_at_one(setup.extend.args[0], setup.score)
    results = {}
    for name, weight in (("combined", w), ("alone", 0.0)):
        setup.args.confidence_weight = weight
        torch.manual_seed(seed)  # groups.py's draw 0: the same pool for both
        with torch.no_grad(), autocast(torch.device("cpu")):
            results[name] = estimates(setup, task, held_out, per_bin)["mean"]
    for n in (16, 64):
        rows = {f"{v} {how}": results[how][f"bon-{v.lower()}@{n}"] for v in ("PRM", "ORM") for how in ("combined", "alone")}
        print(f"seed {seed}, w = {w}, best-of-{n}, {len(rows['PRM alone'])} problems: " + ", ".join(
            f"{k} {sum(r) / len(r):.3f}" for k, r in rows.items()), flush=True)
        for a, b in (("PRM combined", "PRM alone"), ("ORM combined", "ORM alone"), ("PRM combined", "ORM combined"),
                     ("PRM alone", "ORM alone")):
            d, lo, hi = paired_difference(rows[a], rows[b])
            print(f"  {a} - {b}: {d:+.3f} ({lo:+.3f}, {hi:+.3f})", flush=True)


def confidence_at_one(policy, score):
    """setup.score wrapped: before the PRM reads the chains, each step's lowest_logprob is recomputed
    under the policy at temperature 1 (the samples are drawn at the grid's 0.7)."""
    from data.tokenizer import special_id
    from data.task import PAD
    from train_rl import token_logprobs

    def wrapped(chains):
        for k in range(0, len(chains), 256):
            batch = chains[k:k + 256]
            width = max(len(c[-1].sequence) for c in batch)
            tokens = torch.tensor([c[-1].sequence + [special_id(PAD)] * (width - len(c[-1].sequence)) for c in batch])
            logprobs, _ = token_logprobs(policy, tokens, 1.0)  # right padding: causal, so the real tokens see none of it
            for chain, row in zip(batch, logprobs.tolist()):
                for node in chain:  # token t of the sequence is target t - 1
                    node.lowest_logprob = min(row[len(node.parent.sequence) - 1:len(node.sequence) - 1])
        return score(chains)
    return wrapped


if __name__ == "__main__":
    if sys.argv[1] == "auroc":
        auroc(sys.argv[2], int(sys.argv[3]))
    else:
        best_of_n(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[1] == "bon1")
