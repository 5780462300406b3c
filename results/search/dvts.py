"""Does a step search that keeps its subtrees apart beat best-of-16 at matched tokens?

The grid's beam search keeps the PRM's top N/4 steps of the whole problem each round, so its beams
soon share one prefix, and results/search/README.md found that what pays here is more distinct
finished chains for the PRM to choose from. Diverse verifier tree search (DVTS, Beeching, Tunstall
and Rush, "Scaling test-time compute with open models", Hugging Face 2024) splits the budget N into
N/m subtrees that never compete: each samples m next steps from its one current step and keeps the
one the PRM scores highest, so it ends with N/m distinct chains at about the tokens of N chains.

    OMP_NUM_THREADS=1 python results/search/dvts.py out/tiny 0 tune beam dvts:4 dvts:2 dvts:8
    (a variant is beam, the grid's beam search at N = 16, or dvts:m; writes results/search/runs/)
Each variant answers by the finished chain whose last step the PRM scores highest (the grid's beam
rule), by its lowest step ("+min", best-of-N's rule) and by a PRM-weighted vote over its chains ("+vote").
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import search  # noqa: E402
from mcts_budget import N, bins_with_references, distinct_chains, finished_chains, hits, pool_rows, summary  # noqa: E402


def dvts(roots, extend, score, n, m):
    """N/m independent subtrees per problem, each greedy on the PRM among m sampled next steps;
    returns every problem's finished chains (one per subtree)."""
    finished = [[] for _ in roots]
    beams = [[root] * max(1, n // m) for root in roots]  # each copy of the root starts a subtree
    while any(beams):
        owners = [(i, b) for i, problem in enumerate(beams) for b in problem]
        children = extend([b for _, b in owners for _ in range(m)])
        score([[child] for child in children])
        for child in children:
            child.parent.children.append(child)
        beams = [[] for _ in roots]
        for j, (i, _) in enumerate(owners):
            best = search.keep_top(children[j * m:(j + 1) * m], 1)[0]
            best.kept = True
            (finished[i] if best.terminal else beams[i]).append(best)
    return finished


def beam_finals(roots, extend, score, n):
    """The grid's beam search, every finished chain it kept (it answers with the best of them)."""
    search.beam_search(roots, extend, score, n, max(1, n // 4))
    return [[leaf for leaf in finished_chains(root) if leaf.kept] for root in roots]


def answers(finals, problems, setup):
    """Per rule: each problem's answer from its finished chains."""
    last = [search.answer_of(max(c, key=lambda leaf: leaf.prm), pr, setup.p) for c, pr in zip(finals, problems)]
    low = [search.answer_of(max(c, key=lambda leaf: search.chain_score(leaf, "min")), pr, setup.p) for c, pr in zip(finals, problems)]
    voted = [search.vote([search.answer_of(leaf, pr, setup.p) for leaf in c], [search.chain_score(leaf, "min") for leaf in c])
             for c, pr in zip(finals, problems)]
    return {"": last, "+min": low, "+vote": voted}


def main(out, seed, which, variants):
    rows = {}
    for setup, b, problems, prompts, truth, greedy, mine, pool in bins_with_references(out, seed, which):
        for v in variants:
            torch.manual_seed(seed * 1000 + b + 1)
            roots = [search.new_root(prompt) for prompt in prompts]
            with torch.no_grad():
                if v == "beam":
                    finals = beam_finals(roots, setup.extend, setup.score, N)
                else:
                    finals = dvts(roots, setup.extend, setup.score, N, int(v.split(":")[1]))
            tokens = [r.compute.generated_tokens for r in roots]
            distinct = sum(distinct_chains(c, pr, setup)[0] for c, pr in zip(finals, problems)) / len(finals)
            print(f"  seed {seed} d={b} {v}: {distinct:.1f} distinct finished chains per problem", flush=True)
            for rule, got in answers(finals, problems, setup).items():
                mine[f"{v}{rule}"] = (hits(got, truth), tokens)
        pool_rows(rows, mine, seed, which, b)
    summary(rows, out, seed, which, variants, f"dvts_{which}_seed{seed}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
