"""Does beam search find better chains when it steers by the PRM plus the policy's confidence?

results/verifiers/README.md: logit(PRM) + w x the policy's lowest token log-probability so far ranks one
problem's own steps much better than the PRM alone (at w = 1), and beam search's choice among a
problem's next steps is exactly such a ranking. Here the beam keeps the steps with the highest
logit(p) + w x confidence (and answers by the finished chain highest on it), against PRM best-of-16
ranked by the same sum (search.rank_score), on the held-out problems (the second 100 of d = 2, 3).

    OMP_NUM_THREADS=1 python results/search/steer.py out/tiny 0 0 0.25 1     # DIR SEED WEIGHT...
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import search  # noqa: E402
from mcts_budget import N, bins_with_references, finished_chains, hits, pool_rows, summary  # noqa: E402


def confidence(node):
    """The policy's lowest token log-probability from the root down to node."""
    return min(n.lowest_logprob for n in search.path(node))


def steered(score, weight):
    """The PRM's scoring primitive, then each scored step's probability replaced by sigmoid(logit(p) + w x confidence)."""
    def score_and_steer(chains):
        score(chains)
        for chain in chains:
            for node in chain:
                node.prm = 1 / (1 + math.exp(-search.rank_score(node.prm, confidence(node), weight)))
    return score_and_steer


def best_of_pool(pool, problems, setup, weight):
    """PRM best-of-16 over the pool's chains, ranked by the reward model's log-odds + w x confidence."""
    picks = []
    for outcome, problem in zip(pool["bon-prm"], problems):
        chains = finished_chains(outcome.root)
        best = max(chains, key=lambda leaf: search.rank_score(search.chain_score(leaf, "min"), confidence(leaf), weight))
        picks.append(search.answer_of(best, problem, setup.p))
    return picks


def main(out, seed, weights):
    rows = {}
    for setup, b, problems, prompts, truth, greedy, mine, pool in bins_with_references(out, seed, "tune"):
        tokens = mine[f"bon-prm@{N}"][1]
        for w in weights:
            if w:
                mine[f"bon-prm@{N} w{w:g}"] = (hits(best_of_pool(pool, problems, setup, w), truth), tokens)
            for n in (4, 16):
                torch.manual_seed(seed * 1000 + b + 1)
                roots = [search.new_root(prompt) for prompt in prompts]
                with torch.no_grad():
                    leaves = search.beam_search(roots, setup.extend, steered(setup.score, w), n, max(1, n // 4))
                mine[f"beam@{n} w{w:g}"] = (hits([search.answer_of(leaf, pr, setup.p) for leaf, pr in zip(leaves, problems)], truth),
                                            [r.compute.generated_tokens for r in roots])
        pool_rows(rows, mine, seed, "tune", b)
    summary(rows, out, seed, "tune", [str(w) for w in weights], f"steer_tune_seed{seed}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), [float(w) for w in sys.argv[3:]])
