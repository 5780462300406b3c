"""Test-time compute: turn more thinking at inference into more accuracy.

o1's headline is that its accuracy grows with the compute it spends thinking. This script spends
that compute in five ways, all built on the same two primitives:

  next_steps   the policy writes one more step (up to <|step|> or <|endoftext|>), or the rest of
               the chain, for every partial solution of a frontier at once: one batched, KV-cached generate call;
  score_steps  the process reward model (PRM) judges steps: one batched forward of its scalar head.

  greedy       one chain of thought, the likeliest token each time;
  majority     N sampled chains, the most common answer (self-consistency, Wang et al. 2022);
  bon-prm      best-of-N: the chain whose steps the PRM likes best (Lightman et al. 2023);
  prm-vote     best-of-N as a vote, each answer weighted by its chains' PRM scores;
  bon-orm      best-of-N by the outcome reward model (ORM), the baseline the PRM should beat;
  bon-confidence  best-of-N by the policy's own confidence (its least likely token), no verifier;
  beam         step-level beam search guided by the PRM (Snell et al. 2024, section 5);
  mcts         Monte Carlo tree search over steps: PUCT with the policy's step probability as
               prior (AlphaZero), the PRM's score of a leaf (or a short rollout) as its value.

Compute is counted alike: tokens the policy generated, tokens a reward model read. --budget N means
N chains' worth of generated tokens: N samples, N candidate steps per beam round, for MCTS N times the
greedy chain's tokens (counted in, as it sets the budget) or 8N simulations, whichever comes first (a tree
whose chains have all ended re-visits them at no cost in tokens). The tables print what each method spent.

    python search.py --preset tiny --out out/tiny --method all --budget 1,4,8,16,64 --max-tree-budget 16  # the grid
    python search.py --preset tiny --out out/tiny --method mcts --budget 8 --problems my.txt --show

The grid answers the first --per-bin test problems of every bin with every method at every budget
(beam and MCTS up to --max-tree-budget), into DIR/search/scaling.json (per problem: outcome, tokens;
report.py makes the tables), or DIR/search_NAME/ with --policy NAME. A row is a mean per problem: over
the disjoint groups of N in one pool of max(budgets) samples, or over --tree-draws runs of a tree search.
pass@N (any of N right) is best-of-N's ceiling. PRM methods need DIR/prm/ckpt.pt, bon-orm DIR/prm/orm.pt.

--problems FILE: a problem per line (README's form, `#` a comment), an answer per line with its tokens; --show adds
the chain of thought or the tree (PRM scores, visits, verifier marks). A line it cannot read: an error on stderr, `-`, exit 1.
"""
import copy
import math
import os
import sys
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial

import torch

from common import (PRESETS, UserError, autocast, count, parse, read_split, read_task, run_cli, bin_rates, group_by_difficulty, phenomena_bins,
                    setup_device, stage_parser, wilson, write_json)
from data.task import EOT, PAD, STEP, ProblemError, difficulty, parse_problem, prompt_text, values
from data.tokenizer import decode, encode, special_id
from data.verify import verify
from model import generate, length_batches, load_checkpoint, model_from_checkpoint
from reward import aggregate, load_reward_model, outcome_scores, span_minima

METHODS = ("greedy", "majority", "bon-prm", "prm-vote", "bon-orm", "bon-confidence", "beam", "mcts")
SAMPLED = ("majority", "bon-prm", "prm-vote", "bon-orm", "bon-confidence")  # these share one set of N samples
NEEDS_PRM = ("bon-prm", "prm-vote", "beam", "mcts")
MAX_STEP_TOKENS = 32  # a step of the task is at most about 20 tokens; a longer one is cut into pieces


# ----------------------------------------------------------------------------- the search tree

@dataclass
class Compute:
    """What one problem cost: the same two counters for every method."""
    generated_tokens: int = 0  # tokens the policy sampled
    scored_tokens: int = 0     # tokens a reward model read (a forward over the whole sequence)


@dataclass(eq=False)
class Node:
    """One step of a chain of thought; the root is the prompt. Beam and MCTS grow a tree, sampling a bush."""
    sequence: list             # token ids: the prompt and every step down to this one
    compute: Compute           # the problem's counters, shared by its whole tree
    parent: "Node | None" = None
    step: list = field(default_factory=list)  # this step's tokens (the stop token included)
    prompt_len: int = 0
    logprob: float = 0.0       # log-probability of the step under the sampling policy
    lowest_logprob: float = 0.0  # its least likely token's: the policy's own confidence in the step
    terminal: bool = False     # ended by <|endoftext|>, or no room left in the context
    prm: float | None = None   # the PRM's probability that this step is right
    prior: float = 1.0         # MCTS: P(s, a), the step's probability among its siblings
    visit_count: int = 0       # MCTS: N(s, a)
    value_sum: float = 0.0     # MCTS: W(s, a); the mean value Q = W / N
    kept: bool = False         # beam search: the step survived its round
    children: list = field(default_factory=list)

    @property
    def q(self):
        """Mean backed-up value; before any visit, the PRM's own score of the step (first-play value)."""
        return self.value_sum / self.visit_count if self.visit_count else (self.prm or 0.0)


def new_root(prompt):
    return Node(list(prompt), Compute(), prompt_len=len(prompt))


def path(node):
    """The steps from the root (excluded) down to node."""
    return path(node.parent) + [node] if node.parent is not None else []


def chain_text(node):
    return decode(node.sequence[node.prompt_len:])


# ----------------------------------------------------------------------------- the two primitives

@torch.no_grad()
def next_steps(policy, nodes, temperature=1.0, top_k=None, max_step_tokens=MAX_STEP_TOKENS, max_batch=1024, to_end=False):
    """THE STEP PRIMITIVE. One more step for every node of a frontier (k copies of a node: k sampled
    continuations), one generate call per max_batch nodes; returns the new nodes in order, not yet in the
    tree, and charges each problem its tokens. to_end: on to the chain's end in the same call, cut where
    one-step calls would stop (the same tree; no prefill per step); returns each chain's last step."""
    stop, block = (special_id(STEP), special_id(EOT)), policy.cfg.block_size
    children = [None] * len(nodes)
    for chunk in length_batches([n.sequence for n in nodes], max_batch):
        steps, logprobs = generate(policy, [nodes[i].sequence for i in chunk], block if to_end else max_step_tokens,
                                   special_id(PAD), stop_ids=stop[1:] if to_end else stop, temperature=temperature, top_k=top_k)
        for i, tokens, logprob in zip(chunk, steps, logprobs):
            node = nodes[i]
            while tokens:
                n = next((k + 1 for k, t in enumerate(tokens[:max_step_tokens]) if t in stop), min(len(tokens), max_step_tokens))
                sequence = node.sequence + tokens[:n]
                node.compute.generated_tokens += n
                child = Node(sequence, node.compute, parent=node, step=tokens[:n], prompt_len=node.prompt_len, logprob=sum(logprob[:n]),
                             lowest_logprob=min(logprob[:n]), terminal=tokens[n - 1] == stop[1] or len(sequence) >= block)
                node, tokens, logprob = child, tokens[n:], logprob[n:]
            children[i] = node
    return children


def score_steps(prm, chains):
    """THE SCORING PRIMITIVE. chains: for each sequence, the nodes (steps) on one path to score,
    deepest last. The PRM reads each deepest node's sequence once; every node gets the PRM's
    probability that it is right: the lowest score of its step's tokens (reward.span_minima)."""
    sequences = [chain[-1].sequence for chain in chains]
    spans = [[(len(n.parent.sequence), len(n.sequence)) for n in chain] for chain in chains]
    for chain, chain_probs in zip(chains, span_minima(prm, sequences, spans)):
        chain[-1].compute.scored_tokens += len(chain[-1].sequence)
        for node, p in zip(chain, chain_probs):
            node.prm = p


def score_outcomes(orm, leaves):
    """The ORM's probability that each finished chain's answer is right, read at its last token."""
    for leaf in leaves:
        leaf.compute.scored_tokens += len(leaf.sequence)
    return outcome_scores(orm, [leaf.sequence for leaf in leaves])


def chain_score(leaf, how):
    """A chain's PRM score from its step ends' scores (reward.aggregate: min, prod or last)."""
    ends = (special_id(STEP), special_id(EOT))
    return aggregate([node.prm for node in path(leaf) if node.step[-1] in ends], how)


def rank_score(p, confidence, weight):
    """With --confidence-weight w > 0, best-of-N ranks a chain a reward model gives probability p by its
    log-odds + w x the policy's confidence: the two see different mistakes (results/verifiers/README.md)."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p)) + weight * confidence


# ----------------------------------------------------------------------------- methods

def complete(frontier, extend, max_steps=None, attach=True):
    """Extend every node until its chain ends (or max_steps calls of extend, one step each unless to_end); the final nodes."""
    final, steps = list(frontier), 0
    active = [i for i, node in enumerate(final) if not node.terminal]
    while active and (max_steps is None or steps < max_steps):
        for i, end in zip(active, extend([final[i] for i in active])):
            node = end
            while attach and node is not final[i]:  # hang the new step(s) in the tree
                node.parent.children.append(node)
                node = node.parent
            final[i] = end
        active = [i for i in active if not final[i].terminal]
        steps += 1
    return final


def hang_distinct(children):
    """Hang each new step under its parent unless a sibling is the same step (identical samples merge); the ones hung."""
    for child in children:
        if all(child.step != sibling.step for sibling in child.parent.children):
            child.parent.children.append(child)
    return [child for child in children if child in child.parent.children]  # Node compares by identity


def vote(answers, weights=None):
    """The answer with the most votes (or the largest total weight); a chain without an answer
    does not vote. Ties go to the smallest answer: the result never depends on sample order."""
    totals = defaultdict(float)
    for i, answer in enumerate(answers):
        if answer is not None:
            totals[answer] += 1.0 if weights is None else weights[i]
    return min(totals, key=lambda a: (-totals[a], a)) if totals else None


def keep_top(candidates, width):
    """Beam search's selection: the `width` candidates the PRM scores highest (ties: the earlier)."""
    return sorted(candidates, key=lambda node: -node.prm)[:width]  # sorted() is stable


def beam_search(roots, extend, score, n, width):
    """Step-level beam search (Snell et al. 2024, sec. 5.1). Round 1 samples n first steps; each round keeps
    the `width` distinct steps the PRM scores highest (identical samples merge, as in MCTS) and samples n / width
    next steps per slot, the kept steps sharing the slots of merged ones: about n steps a round, like n chains.
    A kept step that ends its chain takes its slot out. Answer: the finished chain whose last step scores highest."""
    branching = max(1, n // width)
    beams, slots, finished = [[root] for root in roots], [width] * len(roots), [[] for _ in roots]
    while any(beams):
        frontier = [b for i, problem in enumerate(beams) for b in problem
                    for _ in range(n if b.parent is None else branching * slots[i] // len(problem))]
        score([[child] for child in hang_distinct(extend(frontier))])
        for i, problem in enumerate(beams):
            kept = keep_top([c for b in problem for c in b.children], slots[i])
            for node in kept:
                node.kept = True
            finished[i] += [node for node in kept if node.terminal]
            slots[i] -= sum(node.terminal for node in kept)
            beams[i] = [node for node in kept if not node.terminal]
    return [keep_top(done, 1)[0] for done in finished]


def puct_select(node, c_puct):
    """PUCT (Silver et al. 2018, AlphaZero): the child maximizing
    Q(s, a) + c_puct * P(s, a) * sqrt(N(s)) / (1 + N(s, a)). Ties: the earlier child."""
    sqrt_visits = math.sqrt(node.visit_count)
    return max(node.children, key=lambda c: c.q + c_puct * c.prior * sqrt_visits / (1 + c.visit_count))


def select_leaf(root, c_puct):
    node = root
    while node.children and not node.terminal:
        node = puct_select(node, c_puct)
    return node


def backup(leaf, value):
    """Mean backup: each node from the leaf to the root counts one more visit and adds the value."""
    node = leaf
    while node is not None:
        node.visit_count += 1
        node.value_sum += value
        node = node.parent


def expand(leaves, extend, score, width):
    """`width` next steps for every leaf in one primitive call (identical ones merge), scored in one PRM call."""
    fresh = hang_distinct(extend([leaf for leaf in leaves for _ in range(width)]))
    for leaf in leaves:
        # P(s, a): the policy's probability of each distinct step, normalized over the siblings
        top = max(c.logprob for c in leaf.children)
        weights = [math.exp(c.logprob - top) for c in leaf.children]
        for c, w in zip(leaf.children, weights):
            c.prior = w / sum(weights)
    if fresh:
        score([[child] for child in fresh])


def mcts(roots, extend, score, simulations, width, c_puct=1.0, token_budgets=None, rollout_steps=0):
    """Monte Carlo tree search over steps, one tree per root. A simulation selects a leaf by PUCT, expands
    it (width sampled steps) and backs up its value: the PRM's score of its step, or of a rollout_steps
    rollout's end. A tree stops after `simulations`, or at token_budgets[i] generated tokens (after one
    simulation). The trees run in lockstep: each round all their leaves to expand go in one primitive call, one PRM call."""
    budgets = token_budgets or [None] * len(roots)
    while True:
        leaves = []
        for root, budget in zip(roots, budgets):
            while root.visit_count < simulations and (root.visit_count == 0 or budget is None or root.compute.generated_tokens < budget):
                leaf = select_leaf(root, c_puct)
                if not leaf.terminal:
                    leaves.append(leaf)
                    break
                backup(leaf, leaf.prm)  # a finished chain: nothing to expand, its value is known
        if not leaves:
            return roots
        expand(leaves, extend, score, width)
        value = {id(leaf): leaf.prm for leaf in leaves if leaf.parent is not None}
        if rollout_steps:
            starts = [leaf for leaf in leaves if leaf.parent is not None]
            ends = complete(starts, extend, max_steps=rollout_steps, attach=False)  # not kept in the tree
            score([[end] for end in ends])
            value.update((id(leaf), end.prm) for leaf, end in zip(starts, ends))
        for leaf in leaves:  # the root has no step of its own: its value is its children's mean
            backup(leaf, value.get(id(leaf), sum(c.prm for c in leaf.children) / len(leaf.children)))


def most_visited_end(root):
    """The answer of a search: follow the most visited child (ties: higher Q) from the root."""
    node = root
    while node.children:
        node = max(node.children, key=lambda c: (c.visit_count, c.q))
    return node


# ----------------------------------------------------------------------------- running a method on many problems

@dataclass
class Setup:
    """The two primitives bound to the models, and the settings every method reads."""
    extend: object          # next_steps with the policy, sampling
    greedy: object          # next_steps with the policy, temperature 0
    score: object           # score_steps with the PRM, or None without one
    orm: object             # the ORM model, or None
    p: int                  # the task's modulus, for the verifier
    args: object

    @classmethod
    def bind(cls, policy, prm, orm, p, args):
        return cls(partial(next_steps, policy, temperature=args.temperature, top_k=args.top_k), partial(next_steps, policy,
                   temperature=0.0), partial(score_steps, prm) if prm is not None else None, orm, p, args)

    def finish(self, nodes, greedy=False):
        """Every node's chain sampled (or decoded greedily) on to its end, in one generate call per batch."""
        return complete(nodes, partial(self.greedy if greedy else self.extend, to_end=True))


@dataclass
class Outcome:
    answer: int | None
    leaf: Node | None       # the chain of thought behind the answer
    root: Node              # everything the method explored
    compute: Compute
    note: str = ""          # e.g. the votes
    rate: float | None = None  # several picks (the pool's groups of n, a tree's draws): the fraction that picked right


def answer_of(leaf, problem, p):
    return verify(problem, chain_text(leaf), p).answer


def run_sampled(setup, methods, prompts, problems, budgets):
    """The sampled methods and pass@n at every budget n, from one pool of max(budgets) samples per problem.
    Budget n picks in each of the pool's disjoint groups of n (as Lightman et al. subsample their pool
    of 1860): its Outcome is the first group's pick, its rate the fraction of groups that picked right,
    its compute the mean group's: judged on the whole pool. Returns {n: {method: [Outcome per problem]}}."""
    pool, with_prm = max(budgets), any(m in methods for m in ("bon-prm", "prm-vote"))
    roots = [new_root(prompt) for prompt in prompts]
    leaves = setup.finish([root for root in roots for _ in range(pool)])
    if with_prm:
        setup.score([path(leaf) for leaf in leaves])
    orm_scores = score_outcomes(setup.orm, leaves) if "bon-orm" in methods else None
    out = {n: defaultdict(list) for n in budgets}
    for i, (root, problem) in enumerate(zip(roots, problems)):
        chains = leaves[i * pool:(i + 1) * pool]
        prm = [chain_score(leaf, setup.args.aggregate) for leaf in chains] if with_prm else None
        orm = orm_scores[i * pool:(i + 1) * pool] if orm_scores is not None else None
        confidence = [min(node.lowest_logprob for node in path(leaf)) for leaf in chains]  # the policy's own, per chain
        scores = {m: [rank_score(p, c, setup.args.confidence_weight) for p, c in zip(probs, confidence)]
                  if setup.args.confidence_weight else probs for m, probs in (("bon-prm", prm), ("bon-orm", orm)) if probs}
        if "bon-confidence" in methods:
            scores["bon-confidence"] = confidence
        answers, truth = [answer_of(leaf, problem, setup.p) for leaf in chains], values(problem, setup.p)[problem.query]
        for n in budgets:
            picks = defaultdict(list)
            for g in (slice(k * n, (k + 1) * n) for k in range(pool // n)):
                select_among(picks, root, chains[g], answers[g], truth, {m: s[g] for m, s in scores.items()}, prm and prm[g])
            for method, groups in picks.items():
                out[n][method].append(mean_of(groups, truth))
    return out


def mean_of(outcomes, truth):
    """Several picks for one problem as one Outcome: the first, its rate the fraction right, its compute the mean."""
    outcomes[0].rate = sum(o.answer == truth for o in outcomes) / len(outcomes)
    outcomes[0].compute = Compute(*(sum(getattr(o.compute, f) for o in outcomes) / len(outcomes)
                                    for f in ("generated_tokens", "scored_tokens")))
    return outcomes[0]


def select_among(out, root, chains, answers, truth, scores, prm=None):
    """Every sampled method's pick among one problem's chains, into out; scores: {best-of-N method:
    a score per chain}, the highest picked (ties: the first sample); prm: the PRM's probabilities, a vote's weights."""
    generated = sum(len(leaf.sequence) - leaf.prompt_len for leaf in chains)
    read = sum(len(leaf.sequence) for leaf in chains)  # a reward model reads each whole chain once
    sampled, scored = Compute(generated), Compute(generated, read)

    def outcome(method, answer, leaf, compute, note=""):
        leaf = leaf or next((l for l, a in zip(chains, answers) if a == answer), chains[0])
        out[method].append(Outcome(answer, leaf, root, compute, note))

    counts = ", ".join(f"{a} x{answers.count(a)}" for a in sorted(set(answers) - {None}))
    outcome("majority", vote(answers), None, sampled, f"votes: {counts or 'no answers'}")
    outcome("pass@n", truth if truth in answers else answers[0], None, sampled)
    for method, s in scores.items():
        best = max(range(len(chains)), key=lambda j: s[j])
        outcome(method, answers[best], chains[best], sampled if method == "bon-confidence" else scored)
    if prm is not None:
        outcome("prm-vote", vote(answers, prm), None, scored)


def run_method(setup, method, prompts, problems, n, greedy=None):
    """Outcomes of one method at budget n; greedy: this problem set's greedy outcomes (mcts)."""
    if method in SAMPLED:
        return run_sampled(setup, [method], prompts, problems, [n])[n][method]
    roots = [new_root(prompt) for prompt in prompts]
    if method == "greedy":
        leaves = setup.finish(roots, greedy=True)
    elif method == "beam":
        width = setup.args.beam_width or max(1, n // 4)  # Snell et al.: 4 next steps per kept beam
        leaves = beam_search(roots, setup.extend, setup.score, n, min(width, n))
    else:
        greedy = greedy or run_method(setup, "greedy", prompts, problems, 1)
        for root, g in zip(roots, greedy):  # the greedy chain sets the budget, so it is paid for
            root.compute = copy.copy(g.compute)
        mcts(roots, setup.extend, setup.score, simulations=8 * n, width=min(setup.args.expand, n), c_puct=setup.args.c_puct,
             token_budgets=[n * g.compute.generated_tokens for g in greedy], rollout_steps=setup.args.rollout_steps)
        leaves = setup.finish([most_visited_end(root) for root in roots])
    return [Outcome(answer_of(leaf, pr, setup.p), leaf, root, root.compute) for leaf, root, pr in zip(leaves, roots, problems)]


# ----------------------------------------------------------------------------- the scaling grid

def run_grid(setup, methods, budgets, records, task, per_bin):
    """per_bin: {difficulty: how many of its test problems}, the first ones of each bin."""
    from tqdm import tqdm
    bins = {d: [records[i] for i in ids[:per_bin[d]]] for d, ids in group_by_difficulty(records).items() if per_bin.get(d)}
    rows = []

    def add(method, n, d, outcomes, truth):
        correct = [o.rate if o.rate is not None else int(o.answer == t) for o, t in zip(outcomes, truth)]
        k = len(outcomes)
        rows.append({"method": method, "budget": n, "difficulty": d, "in_distribution": d <= task.max_train_d,
                     "accuracy": sum(correct) / k, "problems": k, "interval": list(wilson(sum(correct), k)),
                     "generated_tokens": sum(o.compute.generated_tokens for o in outcomes) / k,
                     "scored_tokens": sum(o.compute.scored_tokens for o in outcomes) / k,
                     # per problem (ids: lines of DIR/data/test.jsonl), to recompute any paired comparison
                     "problem": [r["id"] for r in bins[d]], "correct": correct,
                     "tokens": [o.compute.generated_tokens for o in outcomes]})

    sampled = [m for m in methods if m in SAMPLED]
    trees = [(m, n) for n in budgets for m in methods if m in ("beam", "mcts") and n <= (setup.args.max_tree_budget or n)]
    for d in tqdm(sorted(bins), desc="search grid", leave=False):
        problems = [parse_problem(r["problem"], task.p) for r in bins[d]]
        prompts = [encode(prompt_text(r["problem"])) for r in bins[d]]
        truth = [values(pr, task.p)[pr.query] for pr in problems]
        greedy = run_method(setup, "greedy", prompts, problems, 1)
        add("greedy", 1, d, greedy, truth)
        if sampled:
            torch.manual_seed(zlib.crc32(f"{setup.args.seed} {d} pool".encode()))  # its own draws: a change elsewhere moves no row
            for n, outcomes in run_sampled(setup, sampled, prompts, problems, budgets).items():
                for method in sampled + ["pass@n"]:
                    add(method, n, d, outcomes[method], truth)
        for method, n in trees:  # a tree is one run per problem: average draws of it, as the pool's groups are
            draws = []
            for k in range(setup.args.tree_draws):
                torch.manual_seed(zlib.crc32(f"{setup.args.seed} {d} {method} {n}{f' draw {k}' if k else ''}".encode()))
                draws.append(run_method(setup, method, prompts, problems, n, greedy))
            add(method, n, d, [mean_of(list(picks), t) for picks, t in zip(zip(*draws), truth)], truth)  # picks: a problem's, one a draw
    return rows


# ----------------------------------------------------------------------------- reading a problem file

def verifier_mark(node, problem, p):
    """ok / bad for a step by the exact verifier (the answer step: the answer is right)."""
    text = chain_text(node)
    v = verify(problem, text, p)
    if text.endswith(EOT):
        return "ok " if v.answer_correct else "bad"
    return ("ok " if v.step_correct[-1] else "bad") if text.endswith(STEP) and v.step_correct else "   "


def show_step(node, problem, p, indent, chosen, kind):
    """One line per step: chosen path starred, verifier mark, PRM score, and beam's kept / MCTS's visits."""
    prm = f"prm {node.prm:.2f}" if node.prm is not None else "prm  -  "
    extra = {"beam": "  kept" if node.kept else "      ", "mcts": f"  visits {node.visit_count:3d}"}.get(kind, "")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in decode(node.step).replace(STEP, "").replace(EOT, ""))
    return f"{indent}{'*' if chosen else ' '} {verifier_mark(node, problem, p)} {prm}{extra}  {text}"


def show(outcome, problem, p, kind):
    """The chain of thought (one line per step), or for beam and mcts the explored tree."""
    if kind not in ("beam", "mcts"):
        return [show_step(n, problem, p, "    ", True, kind) for n in path(outcome.leaf)] + [f"    {outcome.note}"] * bool(outcome.note)
    chosen = set(map(id, path(outcome.leaf)))

    def walk(node, depth):
        for child in node.children:
            yield show_step(child, problem, p, "    " + "  " * depth, id(child) in chosen, kind)
            yield from walk(child, depth + 1)
    return list(walk(outcome.root, 0))


def answer_file(setup, method, path_, task, block_size, n, show_all):
    """Answers for the problems in a file; returns how many lines could not be read."""
    with open(path_) as f:
        lines = [(k, line.strip()) for k, line in enumerate(f, 1) if line.strip() and not line.lstrip().startswith("#")]
    good = []
    for k, line in lines:
        try:
            problem = parse_problem(line, task.p)
            prompt = encode(prompt_text(problem.text()))  # the canonical form the model was trained on: a=7 -> a = 7
            if difficulty(problem) == 0:
                raise ProblemError(f"? {problem.query} asks for a constant: there is nothing to compute (difficulty 0; "
                                   f"the model learned difficulties 1 to {task.max_train_d})")
            if len(prompt) >= block_size:
                raise ProblemError(f"the problem is {len(prompt)} tokens; the model reads at most {block_size} in all")
            good.append((k, problem, prompt))
        except ProblemError as e:
            print(f"{path_}:{k}: {e}", file=sys.stderr)
    outcomes = run_method(setup, method, [g[2] for g in good], [g[1] for g in good], n) if good else []
    by_line = {g[0]: (o, g[1]) for g, o in zip(good, outcomes)}
    for k, _ in lines:
        if k not in by_line:  # a line it could not read
            print("-")
            continue
        o, problem = by_line[k]
        scored = f", {o.compute.scored_tokens:.0f} read by the reward model" if o.compute.scored_tokens else ""
        print(f"{o.answer if o.answer is not None else 'none'}\t({o.compute.generated_tokens:.0f} tokens of thought{scored})")
        if show_all:
            print("\n".join(show(o, problem, task.p, method)))
    return len(lines) - len(good)


# ----------------------------------------------------------------------------- main

def budget_list(text):
    if not all(b.strip().isdigit() and int(b) > 0 for b in text.split(",")):
        raise UserError(f"--budget {text}: give positive integers separated by commas, e.g. 1,4,16")
    return [int(b) for b in text.split(",")]


def parse_args(argv):
    parser = stage_parser(__doc__)
    parser.add_argument("--method", default="greedy", choices=METHODS + ("all",), help="search method, or all of them (default: greedy)")
    parser.add_argument("--budget", type=budget_list, default="1,4,16", help="compute budgets N, comma-separated (default: 1,4,16; --problems uses the largest)")
    parser.add_argument("--max-tree-budget", type=count(), default=None, help="the grid runs beam and MCTS only at budgets up to this (default: all)")
    parser.add_argument("--tree-draws", type=count(), help="the grid runs beam and MCTS this many times per problem, averaged (default: the preset's)")
    parser.add_argument("--policy", default="sft", help="which policy answers: DIR/NAME/ckpt.pt, e.g. sft, rl, sft_w48 (default: sft)")
    parser.add_argument("--problems", metavar="FILE", help="answer the problems in FILE instead of running the grid")
    parser.add_argument("--show", action="store_true", help="print each chain of thought, or the tree for beam and mcts")
    parser.add_argument("--per-bin", type=count(), default=None, help="test problems in every difficulty bin of the grid (default: the "
                        "preset's search.grid_problems in the phenomena bins, search.grid_problems_other elsewhere)")
    parser.add_argument("--temperature", type=float, help="sampling temperature of every method but greedy (default: the preset's)")
    parser.add_argument("--top-k", type=count(), default=None, help="sample among the k likeliest tokens only (default: all)")
    parser.add_argument("--aggregate", choices=["min", "prod", "last"], help="best-of-N: a chain's PRM score from its steps' (default: the preset's)")
    parser.add_argument("--confidence-weight", type=float, help="best-of-N by the PRM or the ORM: rank by the reward model's log-odds "
                        "+ this x the policy's lowest token log-probability (default: the preset's, 0: by the reward model alone)")
    parser.add_argument("--beam-width", type=count(), default=None, help="beams kept per round (default: N/4, at least 1)")
    parser.add_argument("--expand", type=count(), help="MCTS: steps sampled per expansion, at most N (default: the preset's)")
    parser.add_argument("--c-puct", type=float, help="MCTS: exploration constant of PUCT (default: the preset's)")
    parser.add_argument("--rollout-steps", type=count(0), help="MCTS: value a leaf by a rollout of this many steps (default: the preset's, 0: the PRM's score)")
    return parse(parser, argv, lambda preset, args: preset.search)


def main(argv=None):
    args = parse_args(argv)
    if args.problems and args.method == "all":
        raise UserError("--problems answers with one method: choose one with --method")
    if args.problems and not os.path.exists(args.problems):
        raise UserError(f"no file {args.problems}")
    torch.manual_seed(args.seed)
    task, d = read_task(args.out), setup_device(args.device)
    policy = model_from_checkpoint(load_checkpoint(os.path.join(args.out, args.policy, "ckpt.pt")), args.attn).to(d.device).eval()

    methods = list(METHODS) if args.method == "all" else [args.method]
    prm_path, orm_path = os.path.join(args.out, "prm", "ckpt.pt"), os.path.join(args.out, "prm", "orm.pt")
    needs = {m: prm_path if m in NEEDS_PRM else orm_path for m in methods if m in NEEDS_PRM or m == "bon-orm"}
    missing = [m for m, f in needs.items() if not os.path.exists(f)]
    if missing and args.method != "all":
        raise UserError(f"--method {args.method} needs {needs[args.method]}: run python train_prm.py --preset {args.preset} --out {args.out} first")
    if missing:
        print(f"skipping {', '.join(missing)}: no {' and no '.join(dict.fromkeys(needs[m] for m in missing))} (run train_prm.py first)")
        methods = [m for m in methods if m not in missing]
    prm = load_reward_model(prm_path, policy, args.attn, d.device) if set(methods) & set(NEEDS_PRM) else None
    orm = load_reward_model(orm_path, policy, args.attn, d.device) if "bon-orm" in methods else None
    setup = Setup.bind(policy, prm, orm, task.p, args)

    with torch.no_grad(), autocast(d.device):
        if args.problems:
            if answer_file(setup, args.method, args.problems, task, policy.cfg.block_size, max(args.budget), args.show):
                sys.exit(1)
            return
        start = time.time()
        grid = PRESETS[args.preset].search  # the phenomena bins get enough problems for a paired interval, the others fewer
        per_bin = {b: args.per_bin or (grid.grid_problems if b in phenomena_bins(task.max_train_d) else grid.grid_problems_other)
                   for b in range(1, task.max_eval_d + 1)}
        rows = run_grid(setup, methods, args.budget, read_split(args.out, "test"), task, per_bin)
    out_dir = os.path.join(args.out, "search" if args.policy == "sft" else f"search_{args.policy}")  # every grid is kept
    write_json(os.path.join(out_dir, "scaling.json"), rows)
    greedy = bin_rates({r["difficulty"]: r["correct"] for r in rows if r["method"] == "greedy"})
    write_json(os.path.join(out_dir, "metrics.json"), {
        "stage": "search", "preset": args.preset, "device": str(d.device), "policy": args.policy, "methods": methods,
        "budgets": args.budget, "temperature": args.temperature, "confidence_weight": args.confidence_weight,
        "tree_draws": args.tree_draws, "problems_per_bin": {str(b): n for b, n in per_bin.items()},
        "wall_time_s": time.time() - start, **greedy})
    for method, budget in dict.fromkeys((r["method"], r["budget"]) for r in rows):  # pooled over the bins; per bin: report.py
        mine = [c for r in rows if (r["method"], r["budget"]) == (method, budget) for c in r["correct"]]
        print(f"search: {method:>14} N={budget:<3} accuracy {sum(mine) / len(mine):.3f} over {len(mine)} problems")
    print(f"wrote {out_dir}/scaling.json ({time.time() - start:.0f} s); its table per bin and plot: python report.py --out {args.out}")


if __name__ == "__main__":
    run_cli(main)
