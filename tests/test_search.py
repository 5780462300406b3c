"""Test-time search (search.py): PUCT and backup by hand, MCTS and beam search on toy trees, the
vote, compute accounting against the tokens really generated, and the command line."""
import json
import math
import os
import subprocess
import sys
from functools import partial

import pytest
import torch

import search
from common import PRESETS, read_split, wilson
from data.task import parse_problem, prompt_text
from data.tokenizer import encode
from model import GPT, save_checkpoint
from search import (Compute, Node, backup, beam_search, expand, keep_top, mcts, most_visited_end, puct_select, select_leaf,
                    vote)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- a toy environment
# A state is the tuple of actions taken; the k-th copy of a node handed to `extend` takes action k.
# Steps are worth the value of the table below; the search does not know which leaf is best.

def toy_extend(nodes, depth):
    seen = {}
    children = []
    for node in nodes:
        action = seen[id(node)] = seen.get(id(node), -1) + 1
        sequence = node.sequence + [action]
        children.append(Node(sequence, node.compute, parent=node, step=[action], terminal=len(sequence) == depth))
    return children


def toy_score(chains, values):
    for chain in chains:
        for node in chain:
            node.prm = values(tuple(node.sequence))


def node(prior, visits, value_sum, prm=None, parent=None):
    n = Node([], Compute(), parent=parent, prior=prior, visit_count=visits, value_sum=value_sum, prm=prm)
    if parent is not None:
        parent.children.append(n)
    return n


# ----------------------------------------------------------------------------- MCTS

def test_puct_picks_the_child_with_the_highest_hand_computed_score():
    root = node(1.0, 10, 6.0)
    a = node(0.5, 6, 3.0, parent=root)          # Q 0.5 + 1.0 * 0.5 * sqrt(10) / 7 = 0.7259
    b = node(0.3, 3, 2.1, parent=root)          # Q 0.7 + 1.0 * 0.3 * sqrt(10) / 4 = 0.9372
    c = node(0.2, 0, 0.0, prm=0.4, parent=root)  # unvisited: Q is its PRM score, 0.4 + 0.2 * sqrt(10) = 1.0325
    assert puct_select(root, c_puct=1.0) is c
    assert puct_select(root, c_puct=0.1) is b  # 0.5226, 0.7237, 0.4632: little exploration, best Q wins
    a.value_sum = 4.8  # Q 0.8: 0.8 + 0.0226 beats b
    assert puct_select(root, c_puct=0.1) is a


def test_the_exploration_bonus_grows_with_the_square_root_of_the_parents_visits():
    root = node(1.0, 16, 8.0)
    a = node(0.5, 9, 6.3, parent=root)  # Q 0.7, bonus 0.5 / 10 = 0.05 per unit of sqrt(N)
    b = node(0.5, 4, 1.6, parent=root)  # Q 0.4, bonus 0.5 / 5 = 0.10
    picked = puct_select(root, c_puct=1.0)  # sqrt(16) = 4: 0.7 + 0.2 = 0.9 against 0.4 + 0.4 = 0.8
    assert picked is a, f"at N = 16 PUCT picked the child with Q {picked.q:.1f}, not 0.7: is the bonus N, not sqrt(N)?"
    root.visit_count = 100
    assert puct_select(root, c_puct=1.0) is b  # sqrt(100) = 10: 1.2 against 1.4


def test_mcts_priors_are_the_policys_step_probabilities_normalised_over_the_siblings():
    probs = [0.3, 0.1, 0.1]  # the policy's probability of steps 0, 1, 2 (of all it could write)

    def extend(nodes):
        children = toy_extend(nodes, depth=2)
        for child in children:
            child.logprob = math.log(probs[child.step[0]])
        return children
    root = Node([], Compute())
    expand([root], extend, partial(toy_score, values=lambda s: 0.5), width=3)
    assert [c.prior for c in root.children] == pytest.approx([0.6, 0.2, 0.2])


def test_backup_adds_one_visit_and_the_value_to_every_node_on_the_path():
    root = node(1.0, 2, 1.0)
    child = node(1.0, 1, 0.2, parent=root)
    leaf = node(1.0, 0, 0.0, prm=0.9, parent=child)
    sibling = node(1.0, 1, 0.8, parent=root)
    backup(leaf, 0.9)
    assert (leaf.visit_count, leaf.q) == (1, pytest.approx(0.9))
    assert (child.visit_count, child.q) == (2, pytest.approx((0.2 + 0.9) / 2))  # mean backup
    assert (root.visit_count, root.q) == (3, pytest.approx((1.0 + 0.9) / 3))
    assert (sibling.visit_count, sibling.value_sum) == (1, 0.8)  # off the path: untouched
    assert select_leaf(root, c_puct=0.0) is sibling  # by Q alone: 0.8 over the child's 0.55
    sibling.value_sum = 0.1
    assert select_leaf(root, c_puct=0.0) is leaf  # down through the child to its leaf


def test_mcts_finds_the_best_leaf_of_a_toy_tree_within_its_budget():
    # 3 steps of 3 choices: 27 leaves. Only complete chains carry information (every inner step
    # scores 0.5); the best chain is (2, 0, 1) with 1.0, all others at most 0.6.
    def values(state):
        if len(state) < 3:
            return 0.5
        return 1.0 if state == (2, 0, 1) else 0.6 * ((state[0] * 9 + state[1] * 3 + state[2]) % 7) / 6
    root = Node([], Compute())
    mcts([root], partial(toy_extend, depth=3), partial(toy_score, values=values), simulations=60, width=3, c_puct=0.5)
    assert tuple(most_visited_end(root).sequence) == (2, 0, 1)
    assert root.visit_count == 60


def test_mcts_runs_many_trees_in_lockstep_and_stops_each_at_its_token_budget():
    class CountingExtend:
        def __call__(self, nodes):
            for n in nodes:
                n.compute.generated_tokens += 1
            return toy_extend(nodes, depth=4)
    roots = [Node([], Compute()) for _ in range(3)]
    mcts(roots, CountingExtend(), partial(toy_score, values=lambda s: 0.5), simulations=100, width=2, token_budgets=[1, 6, 1000])
    assert [r.visit_count for r in roots[:2]] == [1, 3]  # 2 tokens per expansion: stop once >= budget
    assert roots[2].visit_count == 100


# ----------------------------------------------------------------------------- beam search, votes

def test_keep_top_keeps_the_highest_scores_and_breaks_ties_by_order():
    nodes = [Node([i], Compute(), prm=p) for i, p in enumerate([0.2, 0.9, 0.5, 0.9, 0.1])]
    assert [n.sequence[0] for n in keep_top(nodes, 3)] == [1, 3, 2]


def test_beam_search_keeps_the_top_width_steps_each_round():
    # n = 4 candidates per round, width 2 kept, so each kept beam samples 4 / 2 = 2 next steps
    first = {(0,): 0.1, (1,): 0.8, (2,): 0.3, (3,): 0.9}
    second = {(3, 0): 0.5, (3, 1): 0.3, (1, 0): 0.2, (1, 1): 0.95}
    root = Node([], Compute())
    score = partial(toy_score, values=lambda state: first.get(state) or second[state])
    best, = beam_search([root], partial(toy_extend, depth=2), score, n=4, width=2)
    assert len(root.children) == 4
    assert sorted(tuple(c.sequence) for c in root.children if c.kept) == [(1,), (3,)]
    assert all(not c.children for c in root.children if not c.kept)  # dropped beams are not expanded
    second_round = [g for c in root.children for g in c.children]
    assert len(second_round) == 4
    assert sorted(tuple(g.sequence) for g in second_round if g.kept) == [(1, 1), (3, 0)]
    assert tuple(best.sequence) == (1, 1)  # the finished chain whose last step scores highest


def test_beam_search_merges_identical_steps_and_gives_their_slots_to_the_kept_ones():
    # n = 4, width 2: all four first samples are one step, kept once; it then samples both slots'
    # 2 x 2 = 4 next steps (without the merge: two copies of one beam, 2 next steps each)
    def extend(nodes):
        children = toy_extend(nodes, depth=2)
        for child in children:
            if child.parent.parent is None:
                child.step, child.sequence = [0], [0]
        return children
    root = Node([], Compute())
    score = partial(toy_score, values=lambda state: {(0, 2): 0.9}.get(state, 0.5))
    best, = beam_search([root], extend, score, n=4, width=2)
    assert [c.sequence for c in root.children] == [[0]] and root.children[0].kept
    assert [g.sequence for g in root.children[0].children] == [[0, 0], [0, 1], [0, 2], [0, 3]]
    assert tuple(best.sequence) == (0, 2)


def test_a_budget_list_takes_positive_integers_only():
    assert search.budget_list("1, 4,16") == [1, 4, 16]
    for bad in ("0,4", "a", "1,,2", "-1", ""):
        with pytest.raises(search.UserError, match="positive integers"):
            search.budget_list(bad)


def test_several_picks_for_one_problem_count_as_the_fraction_right_at_their_mean_cost():
    picks = [search.Outcome(5, None, None, Compute(10, 20)), search.Outcome(4, None, None, Compute(20, 0)),
             search.Outcome(5, None, None, Compute(30, 10))]
    mean = search.mean_of(picks, truth=5)
    assert mean is picks[0] and mean.compute == Compute(20, 10)
    assert mean.rate == pytest.approx(2 / 3), "two of the three picks are right: the rate counts every pick"


def test_majority_vote_ties_break_to_the_smallest_answer_whatever_the_order():
    assert vote([5, 3, 5, 3, None]) == 3
    assert vote([3, 5, None, 5, 3]) == 3
    assert vote([7, 7, 3]) == 7
    assert vote([None, None]) is None
    assert vote([4, 9, 9], weights=[0.9, 0.2, 0.3]) == 4  # PRM-weighted: 0.9 against 0.5
    assert vote([9, 4], weights=[0.5, 0.5]) == 4


def three_chains():
    """A stand-in policy that writes three chains, each as one step: answer 12 (confident), then 5 twice."""
    written = iter([("d = a * c = 7 * 5 = 12", 12, -0.5), ("d = a * c = 7 * 5 = 5", 5, -2.0), ("d = a * c = 7 * 5 = 5", 5, -3.0)])

    def extend(nodes, to_end=False):  # each chain is one step: done either way
        out = []
        for node in nodes:
            text, answer, lowest = next(written)
            step = encode(f"{text}<|step|>answer: {answer}<|endoftext|>")
            out.append(Node(node.sequence + step, node.compute, parent=node, step=step, prompt_len=node.prompt_len,
                            lowest_logprob=lowest, terminal=True))
        return out
    return search.Setup(extend=extend, greedy=None, score=None, orm=None, p=23, args=None)


def test_best_of_n_by_confidence_picks_the_chain_whose_least_likely_token_is_likeliest():
    line = "a = 7; c = 5; d = a * c; ? d"
    picked = search.run_sampled(three_chains(), ["majority", "bon-confidence"], [encode(prompt_text(line))],
                                [parse_problem(line, 23)], [3])[3]
    assert picked["majority"][0].answer == 5 and picked["bon-confidence"][0].answer == 12


def test_rank_score_is_the_reward_models_log_odds_plus_the_weighted_confidence():
    assert search.rank_score(0.8, -2.0, 0.25) == pytest.approx(math.log(4.0) - 0.5)
    assert search.rank_score(0.5, -3.0, 0.0) == 0.0
    assert math.isfinite(search.rank_score(1.0, -1.0, 0.25)) and math.isfinite(search.rank_score(0.0, -1.0, 0.25))


@pytest.mark.parametrize("weight, answer", [(0.0, 5), (0.25, 12)])
def test_best_of_n_by_the_prm_adds_the_policys_confidence_and_the_vote_weighs_by_the_prm_alone(weight, answer):
    """The PRM scores the second chain (answer 5, least likely token -2.0) a little above the first
    (answer 12, -0.5): log-odds 0.490 against 0.405. With a quarter of the confidence added, the first
    ranks higher (0.405 - 0.125 > 0.490 - 0.5); the PRM-weighted vote still sums the PRM's probabilities."""
    setup, line = three_chains(), "a = 7; c = 5; d = a * c; ? d"
    prm = iter([0.60, 0.62, 0.30])

    def score(chains):
        for chain in chains:
            chain[-1].prm = next(prm)
    setup.score, setup.args = score, type("Args", (), {"aggregate": "min", "confidence_weight": weight})
    picked = search.run_sampled(setup, ["bon-prm", "prm-vote"], [encode(prompt_text(line))], [parse_problem(line, 23)], [3])[3]
    assert picked["bon-prm"][0].answer == answer
    assert picked["prm-vote"][0].answer == 5  # 0.62 + 0.30 against 0.60


def test_each_budget_picks_in_every_disjoint_group_of_n_of_one_pool_and_is_judged_on_their_mean():
    """A pool of 3 chains (answers 12, 5, 5; the truth is 7 * 5 = 35 = 12 mod 23): budget 1 picks
    in 3 groups of one, budgets 2 and 3 in one group, the pool's first n chains."""
    line = "a = 7; c = 5; d = a * c; ? d"
    prompt = encode(prompt_text(line))
    picked = search.run_sampled(three_chains(), ["majority", "bon-confidence"], [prompt], [parse_problem(line, 23)], [1, 2, 3])
    chains = [len(encode(f"d = a * c = 7 * 5 = {a}<|step|>answer: {a}<|endoftext|>")) for a in (12, 5, 5)]
    assert picked[1]["majority"][0].compute.generated_tokens == pytest.approx(sum(chains) / 3)  # the mean group of one
    for n in (2, 3):
        assert picked[n]["majority"][0].compute.generated_tokens == sum(chains[:n])
    for n in (1, 2, 3):
        assert picked[n]["bon-confidence"][0].answer == 12  # the first group's pick: the first sample stays the most confident
    rate = {n: {m: picked[n][m][0].rate for m in ("majority", "pass@n", "bon-confidence")} for n in (1, 2, 3)}
    assert rate[1] == pytest.approx({"majority": 1 / 3, "pass@n": 1 / 3, "bon-confidence": 1 / 3})  # one sample: 1 of 3 right
    assert picked[1]["majority"][0].answer == 12 and picked[1]["pass@n"][0].answer == 12  # the first group's answer
    assert picked[2]["majority"][0].answer == 5  # a tie of 12 and 5 goes to the smaller answer
    assert rate[2] == {"majority": 0, "pass@n": 1, "bon-confidence": 1}
    assert picked[3]["majority"][0].answer == 5 and rate[3] == {"majority": 0, "pass@n": 1, "bon-confidence": 1}


# ----------------------------------------------------------------------------- compute accounting

def test_compute_accounting_equals_the_tokens_actually_generated_and_scored(monkeypatch):
    torch.manual_seed(0)
    cfg = PRESETS["test"].model_config()
    cfg.block_size = 64  # chains of a few steps: prompts are about 40 tokens
    policy, prm = GPT(cfg).eval(), GPT(cfg).eval()
    torch.nn.init.normal_(prm.scalar_head.weight, std=1.0)
    generated, scored, real_generate = [0], [0], search.generate

    def counting_generate(*args, **kwargs):
        tokens, logprobs = real_generate(*args, **kwargs)
        generated[0] += sum(map(len, tokens))
        return tokens, logprobs

    def counting_scorer(fn):
        def wrapper(model, sequences, *rest, **kwargs):
            scored[0] += sum(map(len, sequences))
            return fn(model, sequences, *rest, **kwargs)
        return wrapper
    monkeypatch.setattr(search, "generate", counting_generate)
    monkeypatch.setattr(search, "span_minima", counting_scorer(search.span_minima))
    monkeypatch.setattr(search, "outcome_scores", counting_scorer(search.outcome_scores))

    class Args:
        aggregate, confidence_weight, beam_width, expand, c_puct, rollout_steps = "min", 0.25, None, 2, 1.0, 1
    # a random policy rarely ends a step: cap steps at 6 tokens so that chains have many steps
    setup = search.Setup(extend=partial(search.next_steps, policy, temperature=1.0, max_step_tokens=6),
                         greedy=partial(search.next_steps, policy, temperature=0.0, max_step_tokens=6),
                         score=partial(search.score_steps, prm), orm=prm, p=23, args=Args)
    lines = ["a = 7; c = 5; d = a * c; ? d", "b = 3; e = b + 1; f = e * e; ? f"]
    problems, prompts = [parse_problem(line, 23) for line in lines], [encode(prompt_text(line)) for line in lines]
    with torch.no_grad():
        outcomes = search.run_method(setup, "greedy", prompts, problems, 1)
        for o, prompt in zip(outcomes, prompts):  # greedy: the tokens of its one chain
            assert o.compute.generated_tokens == len(o.leaf.sequence) - len(prompt) and o.compute.scored_tokens == 0
        sampled = search.run_sampled(setup, search.SAMPLED, prompts, problems, [3])[3]
        roots = [o.root for o in sampled["majority"]]  # the sampled methods share these roots, and the pool
        outcomes += [search.Outcome(None, None, r, r.compute) for r in roots]
        for method in ("beam", "mcts"):
            outcomes += search.run_method(setup, method, prompts, problems, 4)
    assert generated[0] > 0 and scored[0] > 0
    assert sum(o.compute.generated_tokens for o in outcomes) == generated[0]
    assert sum(o.compute.scored_tokens for o in outcomes) == scored[0]
    for i in range(2):  # the sampled methods: the same generated tokens; the PRM and the ORM each read the chains once
        assert len({sampled[m][i].compute.generated_tokens for m in search.SAMPLED}) == 1
        assert sampled["majority"][i].compute.scored_tokens == 0
        assert sampled["bon-prm"][i].compute.scored_tokens == sampled["bon-orm"][i].compute.scored_tokens > 0


def test_a_chain_generated_to_its_end_in_one_call_is_the_tree_that_one_step_calls_build():
    torch.manual_seed(0)
    cfg = PRESETS["test"].model_config()
    cfg.block_size = 64
    policy = GPT(cfg).eval()
    prompts = [encode(prompt_text(line)) for line in ["a = 7; c = 5; d = a * c; ? d", "b = 3; e = b + 1; ? e", "a = 1; ? a"]]
    step = partial(search.next_steps, policy, temperature=0.0, max_step_tokens=6)  # a random policy's steps get cut at 6

    def tree(node):
        return [(c.step, round(c.logprob, 4), round(c.lowest_logprob, 4), c.terminal, tree(c)) for c in node.children]
    with torch.no_grad():
        by_step, at_once = [[search.new_root(p) for p in prompts] for _ in range(2)]
        search.complete(by_step, step)
        leaves = search.complete(at_once, partial(step, to_end=True))
    assert [tree(r) for r in at_once] == [tree(r) for r in by_step]
    assert all(len(search.path(leaf)) > 1 and leaf.terminal for leaf in leaves)  # several steps, each chain finished
    assert [r.compute.generated_tokens for r in at_once] == [r.compute.generated_tokens for r in by_step]


# ----------------------------------------------------------------------------- the command line

def run(*args):
    return subprocess.run([sys.executable, "search.py", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Task data and an untrained policy of the test preset (no SFT: these tests are about plumbing)."""
    out = tmp_path_factory.mktemp("search")
    subprocess.run([sys.executable, "data/prepare.py", "--preset", "test", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    torch.manual_seed(0)
    save_checkpoint(str(out / "sft" / "ckpt.pt"), GPT(PRESETS["test"].model_config()))
    return out


def test_prm_methods_without_a_prm_say_so_in_one_line(run_dir):
    result = run("--preset", "test", "--out", str(run_dir), "--method", "beam")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: --method beam needs {run_dir}/prm/ckpt.pt: run python train_prm.py --preset test --out {run_dir} first"]
    result = run("--preset", "test", "--out", str(run_dir), "--method", "all", "--budget", "1", "--per-bin", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"skipping bon-prm, prm-vote, bon-orm, beam, mcts: no {run_dir}/prm/ckpt.pt and no {run_dir}/prm/orm.pt (run train_prm.py first)"
    assert {r["method"] for r in json.loads((run_dir / "search" / "scaling.json").read_text())} == {"greedy", "majority", "bon-confidence", "pass@n"}


def test_grid_writes_rows_for_every_method_budget_and_bin(run_dir, tmp_path):
    for name in ("data", "sft"):
        os.symlink(run_dir / name, tmp_path / name)
    os.makedirs(tmp_path / "prm")
    torch.manual_seed(1)
    save_checkpoint(str(tmp_path / "prm" / "ckpt.pt"), GPT(PRESETS["test"].model_config()))  # stand-ins
    save_checkpoint(str(tmp_path / "prm" / "orm.pt"), GPT(PRESETS["test"].model_config()))
    result = run("--preset", "test", "--out", str(tmp_path), "--method", "all", "--budget", "1,2,4", "--max-tree-budget", "2",
                 "--per-bin", "1")
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "search" / "scaling.json").read_text())
    keys = {(r["method"], r["budget"], r["difficulty"]) for r in rows}
    for d in (1, 2, 3, 4):
        assert ("greedy", 1, d) in keys
        for method in search.METHODS[1:] + ("pass@n",):
            assert (method, 1, d) in keys and (method, 2, d) in keys
            assert ((method, 4, d) in keys) == (method not in ("beam", "mcts"))  # the tree searches stop at 2
    by = {(r["method"], r["budget"], r["difficulty"]): r for r in rows}
    for d in (1, 2, 3, 4):  # one pool: budget 4 sees budget 2's samples and more, so it costs more and pass@4 >= pass@2
        assert by["majority", 1, d]["tokens"] <= by["majority", 2, d]["tokens"] <= by["majority", 4, d]["tokens"]
        assert by["pass@n", 1, d]["correct"] <= by["pass@n", 2, d]["correct"] <= by["pass@n", 4, d]["correct"]
    assert all({"method", "budget", "difficulty", "accuracy", "generated_tokens"} <= set(r) for r in rows)
    import report  # the grid's table is report.py's, from this JSON
    assert "| mcts | 2 |" in report.scaling_table(rows, max_train_d=2)
    # every row keeps its problems' outcomes: the accuracy, its n and its interval follow from them
    test_ids = {r["id"]: r["difficulty"] for r in read_split(str(tmp_path), "test")}
    for r in rows:
        assert len(r["problem"]) == len(r["correct"]) == len(r["tokens"]) == r["problems"] == 1
        assert all(test_ids[i] == r["difficulty"] for i in r["problem"])
        assert r["accuracy"] == sum(r["correct"]) / r["problems"]
        assert r["interval"] == pytest.approx(list(wilson(sum(r["correct"]), r["problems"])))
        assert r["generated_tokens"] == sum(r["tokens"]) / r["problems"]
    # the preset's two draws of each tree search against one: the mean of the same first draw and a second one
    assert json.loads((tmp_path / "search" / "metrics.json").read_text())["tree_draws"] == PRESETS["test"].search.tree_draws == 2
    result = run("--preset", "test", "--out", str(tmp_path), "--method", "mcts", "--budget", "1,2", "--per-bin", "1", "--tree-draws", "1")
    assert result.returncode == 0, result.stderr
    one = {(r["method"], r["budget"], r["difficulty"]): r for r in json.loads((tmp_path / "search" / "scaling.json").read_text())}
    trees = [k for k in one if k[0] == "mcts"]
    assert len(trees) == 8 and all(2 * by[k]["correct"][0] - one[k]["correct"][0] in (0, 1) for k in trees)
    assert any(by[k]["tokens"] != one[k]["tokens"] for k in trees), "a tree row is one draw's: are --tree-draws averaged?"
    result = run("--preset", "test", "--out", str(tmp_path), "--method", "mcts", "--tree-draws", "0")
    assert result.returncode == 1 and result.stderr.strip() == "search.py: error: argument --tree-draws: 0: give at least 1"


def test_grid_gives_the_phenomena_bins_more_problems(run_dir, tmp_path):
    """The test preset: grid_problems = 3 in its phenomena bin (d = 2 of training 1..2), 2 elsewhere."""
    result = run("--preset", "test", "--out", str(run_dir), "--method", "greedy", "--budget", "1")
    assert result.returncode == 0, result.stderr
    rows = json.loads((run_dir / "search" / "scaling.json").read_text())
    assert {r["difficulty"]: r["problems"] for r in rows} == {1: 2, 2: 3, 3: 2, 4: 2}
    metrics = json.loads((run_dir / "search" / "metrics.json").read_text())
    assert metrics["problems_by_difficulty"] == {"1": 2, "2": 3, "3": 2, "4": 2}
    assert metrics["temperature"] == PRESETS["test"].search.temperature  # the report says what the samples were drawn at


def test_problems_file_with_the_tree_and_a_malformed_line(run_dir, tmp_path):
    os.symlink(run_dir / "sft", tmp_path / "prm")  # the policy stands in as the PRM
    os.symlink(run_dir / "data", tmp_path / "data")
    os.symlink(run_dir / "sft", tmp_path / "sft")
    problems = tmp_path / "problems.txt"
    problems.write_text("a = 7; c = 5; d = a * c; ? d\nd = a *; ? d\nb = 3; e = b + 1; ? e\n")
    result = run("--preset", "test", "--out", str(tmp_path), "--method", "mcts", "--budget", "2",
                 "--problems", str(problems), "--show")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "problems.txt:2" in errors[0] and "Traceback" not in result.stderr
    answers = [line for line in result.stdout.splitlines() if not line.startswith("    ")]
    assert len(answers) == 3 and answers[1] == "-" and "tokens of thought" in answers[0]
    assert "visits" in result.stdout and "prm" in result.stdout


def test_a_problem_without_spaces_is_read_and_answered_like_the_spaced_one(run_dir, tmp_path):
    problems = tmp_path / "problems.txt"
    problems.write_text("a = 7; c = 5; d = a * c; ? d\na=7; c=5; d=a*c; ? d\n")
    result = run("--preset", "test", "--out", str(run_dir), "--problems", str(problems))
    assert result.returncode == 0, result.stderr
    spaced, tight = result.stdout.splitlines()
    assert spaced == tight  # greedy on the same canonical prompt: the same answer and tokens


def test_a_query_on_a_constant_gets_one_line_saying_why_and_never_an_answer(run_dir, tmp_path):
    problems = tmp_path / "problems.txt"
    problems.write_text("a = 5; b = a + 1; ? a\n")
    result = run("--preset", "test", "--out", str(run_dir), "--problems", str(problems))
    assert result.returncode == 1 and result.stdout.splitlines() == ["-"]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "asks for a constant" in errors[0] and "Traceback" not in result.stderr
