"""Does MCTS turn more of its token budget into accuracy on the hardest trained bins?

The grid's MCTS at N = 16 spends about half of best-of-16's tokens. Each variant below reruns it
with its settings changed (simulations per unit of budget, PUCT's c, steps per expansion, and how
the tree answers: its most visited chain, or a PRM-weighted vote over every finished chain in it),
on the phenomena bins (d = 2, 3), and compares it on the same problems with PRM best-of-N and the
PRM-weighted vote of N samples (paired 95% intervals).

  problems "grid": the grid's own problems (the first 100 of each bin), against the grid's rows;
  problems "tune": the next 100 of each bin, which no committed number uses, against best-of-N
                   drawn here: choose settings there, then judge them on "grid".

    OMP_NUM_THREADS=1 python results/search/mcts_budget.py out/tiny 0 tune base:8:1:4 c4:8:4:4 r2:8:1:4:rollout=2
    (a variant is name:simulations per unit of N:c_puct:expand[:pw_c:pw_alpha], the last two for
    progressive widening, [:rollout=K] for a leaf valued by the PRM at the end of a K-step rollout;
    writes results/search/runs/)
"""
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import search  # noqa: E402
from common import autocast, group_by_difficulty, paired_difference, phenomena_bins, read_split, read_task  # noqa: E402
from data.task import parse_problem, prompt_text, values  # noqa: E402
from data.tokenizer import encode  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402
from reward import load_reward_model  # noqa: E402

N = 16
SELECT_LEAF = search.select_leaf


def finished_chains(root):
    stack, ends = [root], []
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.terminal and node.prm is not None:
            ends.append(node)
    return ends


def distinct_chains(leaves, problem, setup):
    """(distinct finished chains, distinct answers among them)."""
    texts = {tuple(leaf.sequence) for leaf in leaves}
    return len(texts), len({search.answer_of(leaf, problem, setup.p) for leaf in leaves} - {None})


def tree_best(root, problem, setup):
    """The answer of the finished chain in the tree the PRM scores highest: best-of-N over the tree."""
    ends = finished_chains(root)
    return search.answer_of(max(ends, key=lambda leaf: search.chain_score(leaf, setup.args.aggregate)), problem, setup.p) if ends else None


def tree_vote(root, problem, setup):
    """PRM-weighted vote over the finished, scored chains of a tree (None if it finished none)."""
    ends = finished_chains(root)
    answers = [search.answer_of(leaf, problem, setup.p) for leaf in ends]
    return search.vote(answers, [search.chain_score(leaf, setup.args.aggregate) for leaf in ends]) if ends else None


def widening_select(pw_c, pw_alpha):
    """select_leaf with progressive widening (Coulom 2007; Couetoux et al. 2011): a node visited
    N times may hold pw_c * N^pw_alpha distinct children; below that, it is expanded again (more
    sampled steps) instead of descending. Without it a node is expanded once, and the tree runs
    out of new chains before its token budget."""
    def select(root, c_puct):
        node = root
        while node.children and not node.terminal:
            if len(node.children) < pw_c * node.visit_count ** pw_alpha:
                return node
            node = search.puct_select(node, c_puct)
        return node
    return select


def run_mcts(setup, prompts, problems, greedy, sims, c_puct, expand, rollout_steps=0):
    """(most visited answers, tree-vote answers, generated tokens) per problem."""
    roots = [search.new_root(prompt) for prompt in prompts]
    for root, g in zip(roots, greedy):
        root.compute = copy.copy(g.compute)
    search.mcts(roots, setup.extend, setup.score, simulations=sims * N, width=min(expand, N), c_puct=c_puct,
                token_budgets=[N * g.compute.generated_tokens for g in greedy], rollout_steps=rollout_steps)
    voted = [tree_vote(root, pr, setup) for root, pr in zip(roots, problems)]
    best = [tree_best(root, pr, setup) for root, pr in zip(roots, problems)]
    leaves = setup.finish([search.most_visited_end(root) for root in roots])
    visited = [search.answer_of(leaf, pr, setup.p) for leaf, pr in zip(leaves, problems)]
    unscored = [search.path(leaf) for leaf in leaves if any(n.prm is None for n in search.path(leaf))]
    if unscored:  # the completion of the most visited chain, for the diagnosis only
        setup.score(unscored)
    picked = [search.chain_score(leaf, setup.args.aggregate) for leaf in leaves]
    distinct = [distinct_chains(finished_chains(root) + [leaf], problem, setup) for root, leaf, problem in zip(roots, leaves, problems)]
    return (visited, [v if v is not None else a for v, a in zip(voted, visited)], [r.compute.generated_tokens for r in roots],
            picked, [v if v is not None else a for v, a in zip(best, visited)], distinct)


def diagnose(name, truth, mcts_answers, mcts_scores, bon_answers, bon_scores):
    """Where best-of-N is right and the tree is wrong: did the tree miss the chain the PRM likes
    best (a search failure: its pick scores lower), or find a wrong one the PRM likes as much (the
    verifier's failure)?"""
    lost = [i for i in range(len(truth)) if bon_answers[i] == truth[i] and mcts_answers[i] != truth[i]]
    won = [i for i in range(len(truth)) if bon_answers[i] != truth[i] and mcts_answers[i] == truth[i]]
    lower = sum(mcts_scores[i] < bon_scores[i] for i in lost)
    print(f"  {name}: best-of-{N} right, tree wrong on {len(lost)} problems (tree's pick scored lower by the PRM on "
          f"{lower}: search missed the chain; as high or higher on {len(lost) - lower}: the PRM preferred a wrong chain); "
          f"the tree right, best-of-{N} wrong on {len(won)}; the tree's pick scored lower on "
          f"{sum(a < b for a, b in zip(mcts_scores, bon_scores))} of {len(truth)} problems", flush=True)


def setup_for(out, seed):
    """The run's task, and its SFT policy and PRM bound as search.py binds them (no ORM)."""
    args = search.parse_args(["--preset", "tiny", "--out", out, "--seed", str(seed)])
    task = read_task(out)
    policy = model_from_checkpoint(load_checkpoint(os.path.join(out, "sft", "ckpt.pt"))).eval()
    prm = load_reward_model(os.path.join(out, "prm", "ckpt.pt"), policy, args.attn, "cpu")
    return task, search.Setup.bind(policy, prm, None, task.p, args)


def problem_bins(out, task, which):
    """Per phenomena bin: b, the grid's rows of b by (method, budget), and the problems, their prompts
    and their answers: the grid's own ("grid") or the next ones of the bin ("tune")."""
    grid = json.load(open(os.path.join(out, "search", "scaling.json")))
    test = read_split(out, "test")
    by_bin = group_by_difficulty(test)
    for b in phenomena_bins(task.max_train_d):
        at = {(r["method"], r["budget"]): r for r in grid if r["difficulty"] == b}
        n_grid = len(at[("greedy", 1)]["problem"])
        ids = at[("greedy", 1)]["problem"] if which == "grid" else by_bin[b][n_grid:2 * n_grid]
        problems = [parse_problem(test[i]["problem"], task.p) for i in ids]
        yield b, at, problems, [encode(prompt_text(test[i]["problem"])) for i in ids], [values(pr, task.p)[pr.query] for pr in problems]


def best_of_n(setup, which, at, prompts, problems, truth):
    """PRM best-of-N and the PRM-weighted vote on these problems, {name: (correct, tokens)}: the grid's
    rows ("grid"), or drawn here ("tune"); and the pool of samples (None on "grid")."""
    if which == "grid":
        return {f"{m}@{N}": (at[(m, N)]["correct"], at[(m, N)]["tokens"]) for m in ("bon-prm", "prm-vote")}, None
    pool = search.run_sampled(setup, ["bon-prm", "prm-vote"], prompts, problems, [N])[N]
    return {f"{m}@{N}": (hits([o.answer for o in pool[m]], truth), [o.compute.generated_tokens for o in pool[m]])
            for m in ("bon-prm", "prm-vote")}, pool


def hits(answers, truth):
    return [int(a == t) for a, t in zip(answers, truth)]


def bins_with_references(out, seed, which):
    """Per phenomena bin, what every variant is judged against, under no_grad with the bin's seed set:
    (setup, b, problems, prompts, truth, greedy outcomes, {name: (correct, tokens)} of best-of-N, its pool)."""
    task, setup = setup_for(out, seed)
    for b, at, problems, prompts, truth in problem_bins(out, task, which):
        with torch.no_grad(), autocast(torch.device("cpu")):
            torch.manual_seed(seed * 1000 + b)
            greedy = search.run_method(setup, "greedy", prompts, problems, 1)
            yield (setup, b, problems, prompts, truth, greedy, *best_of_n(setup, which, at, prompts, problems, truth))


def pool_rows(rows, mine, seed, which, b):
    """Add one bin's {name: (correct, tokens)} to the pooled rows, printing each."""
    for k, (c, t) in mine.items():
        r = rows.setdefault(k, {"correct": [], "tokens": []})
        r["correct"] += c
        r["tokens"] += t
        print(f"seed {seed} {which} d={b} {k:>16}: {sum(c) / len(c):.3f} ({sum(t) / len(t):.0f} tokens)", flush=True)


def summary(rows, out, seed, which, variants, name):
    """Every pooled row against PRM best-of-N and the PRM-weighted vote (paired 95% intervals), printed
    and written to results/search/runs/NAME.json."""
    print(f"seed {seed}, {which} problems, d = 2, 3 pooled:")
    for k, r in rows.items():
        r["accuracy"], r["mean_tokens"] = sum(r["correct"]) / len(r["correct"]), sum(r["tokens"]) / len(r["tokens"])
        for ref in (f"bon-prm@{N}", f"prm-vote@{N}"):
            r[f"minus {ref}"] = paired_difference(r["correct"], rows[ref]["correct"])
        print(f"  {k:>16}: {r['accuracy']:.3f} ({r['mean_tokens']:.0f} tokens); " + "; ".join(
            f"- {ref} {r[f'minus {ref}'][0]:+.3f} ({r[f'minus {ref}'][1]:+.3f}, {r[f'minus {ref}'][2]:+.3f})"
            for ref in (f"bon-prm@{N}", f"prm-vote@{N}")), flush=True)
    os.makedirs(os.path.join(os.path.dirname(__file__), "runs"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "runs", f"{name}.json"), "w") as f:
        json.dump({"out": out, "seed": seed, "problems": which, "variants": variants, "rows": rows}, f)


def main(out, seed, which, variants):
    rows = {}
    for setup, b, problems, prompts, truth, greedy, mine, pool in bins_with_references(out, seed, which):
        if pool is not None:
            bon = ([o.answer for o in pool["bon-prm"]], [search.chain_score(o.leaf, setup.args.aggregate) for o in pool["bon-prm"]])
            spread = [distinct_chains(finished_chains(o.root), pr, setup) for o, pr in zip(pool["bon-prm"], problems)]
            print(f"  seed {seed} d={b} {N} samples: {sum(c for c, _ in spread) / len(spread):.1f} distinct chains, "
                  f"{sum(a for _, a in spread) / len(spread):.2f} distinct answers per problem", flush=True)
        for v in variants:
            name, sims, c_puct, expand, *pw = [f for f in v.split(":") if "=" not in f]
            rollout = int(dict(f.split("=") for f in v.split(":") if "=" in f).get("rollout", 0))
            search.select_leaf = widening_select(*map(float, pw)) if pw else SELECT_LEAF
            torch.manual_seed(seed * 1000 + b + 1)
            visited, voted, tokens, picked, best, distinct = run_mcts(setup, prompts, problems, greedy, int(sims), float(c_puct),
                                                                      int(expand), rollout)
            if which == "tune":
                diagnose(f"seed {seed} d={b} {name}", truth, visited, picked, *bon)
                print(f"  seed {seed} d={b} {name}: {sum(c for c, _ in distinct) / len(distinct):.1f} distinct finished chains, "
                      f"{sum(a for _, a in distinct) / len(distinct):.2f} distinct answers per tree", flush=True)
            mine[name], mine[name + "+vote"], mine[name + "+best"] = (hits(visited, truth), tokens), (hits(voted, truth), tokens), (hits(best, truth), tokens)
        pool_rows(rows, mine, seed, which, b)
    summary(rows, out, seed, which, variants, f"mcts_{which}_seed{seed}_{variants[-1].split(':')[0]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
