"""Step search that finishes every branch it opens: resample from the PRM's located first error.

The grid's tree searches lose to best-of-N because they finish few distinct chains (README.md here).
This search keeps best-of-N's finished chains and spends its tokens where the PRM doubts: round 0
samples `first` whole chains per problem; each later round takes the chain the PRM scores highest
so far, finds the step the PRM puts its first error at (train_prm.located_first_error: the largest
drop of the running minimum), and samples `per_round` whole new endings from just before that step.
A new ending costs only its own tokens: the trusted prefix is shared. A problem stops once it has
generated N times its greedy chain's tokens (MCTS's budget). Answer: the best chain, or a PRM-weighted
vote over every finished chain.

    OMP_NUM_THREADS=1 python results/search/resample.py out/tiny 0 tune 4:4 8:4
    (a variant is first:per_round; "tune": the second 100 problems of d = 2, 3, "grid": the grid's own)
"""
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search  # noqa: E402
from mcts_budget import N, bins_with_references, hits, pool_rows, summary  # noqa: E402
from train_prm import located_first_error  # noqa: E402


def step_nodes(leaf):
    ends = (search.special_id(search.STEP), search.special_id(search.EOT))
    return [node for node in search.path(leaf) if node.step[-1] in ends]


def restart_point(leaf):
    """The node just before the step the PRM puts the chain's first error at (the root for step 0)."""
    steps = step_nodes(leaf)
    j = located_first_error([node.prm for node in steps], 1.0)
    return steps[j].parent if j < len(steps) else leaf.parent


def resample_search(setup, roots, budgets, first, per_round, shared):
    """shared: (restarts from the root, restarts below it, prefix tokens reused), counted in place."""
    chains = [[] for _ in roots]
    starts = [root for root in roots for _ in range(first)]
    while starts:
        leaves = setup.finish(starts)
        setup.score([search.path(leaf) for leaf in leaves])
        where = {id(root): i for i, root in enumerate(roots)}
        for leaf in leaves:
            chains[where[id(search.path(leaf)[0].parent)]].append(leaf)
        starts = []
        for i, root in enumerate(roots):
            if root.compute.generated_tokens < budgets[i]:
                best = max(chains[i], key=lambda leaf: search.chain_score(leaf, setup.args.aggregate))
                start = restart_point(best)
                starts += [start] * per_round
                shared[0 if start is root else 1] += per_round
                shared[2] += per_round * (len(start.sequence) - start.prompt_len)
    return chains


def main(out, seed, which, variants):
    rows = {}
    for setup, b, problems, prompts, truth, greedy, mine, _ in bins_with_references(out, seed, which):
        for v in variants:
            first, per_round, *scale = v.split(":")
            scale = float(scale[0]) if scale else 1.0
            roots = [search.new_root(prompt) for prompt in prompts]
            for root, g in zip(roots, greedy):  # the greedy chain sets the budget, so it is paid for
                root.compute = copy.copy(g.compute)
            torch.manual_seed(seed * 1000 + b + 1)
            shared = [0, 0, 0]
            chains = resample_search(setup, roots, [scale * N * g.compute.generated_tokens for g in greedy], int(first), int(per_round), shared)
            tokens = [root.compute.generated_tokens for root in roots]
            best, voted, count = [], [], []
            for leaves, pr in zip(chains, problems):
                answers = [search.answer_of(leaf, pr, setup.p) for leaf in leaves]
                scores = [search.chain_score(leaf, setup.args.aggregate) for leaf in leaves]
                best.append(answers[scores.index(max(scores))])
                voted.append(search.vote(answers, scores))
                count.append(len(leaves))
            print(f"  seed {seed} d={b} resample {v}: {sum(count) / len(count):.1f} chains per problem; restarts from the root {shared[0]}, below it {shared[1]}, "
                  f"{shared[2] / max(1, shared[1]):.1f} prefix tokens reused per restart below the root", flush=True)
            mine[f"resample {v}"], mine[f"resample {v}+vote"] = (hits(best, truth), tokens), (hits(voted, truth), tokens)
        pool_rows(rows, mine, seed, which, b)
    summary(rows, out, seed, which, variants, f"resample_{which}_seed{seed}_{variants[-1].replace(':', '-')}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
