"""The reasoning task: modular arithmetic on computation graphs.

A problem is a shuffled list of assignments over single-letter variables, modulo a prime p,
and a query:

    a = 7; c = 5; d = a * c; x = 4; e = d - 3; ? e

Some assignments are distractors the query does not need. The difficulty d of a problem is the
number of operations needed to compute the queried variable; the number of assignments is the
same for every d (distractors pad it), so difficulty is not just length (after the iGSM setting
of "Physics of Language Models", part 2).

The chain of thought computes the needed operations one per step, each only after its inputs,
showing the definition, the substituted values and the result; each step ends with the step
token, and the last line gives the answer:

    d = a * c = 7 * 5 = 12<|step|>e = d - 3 = 12 - 3 = 9<|step|>answer: 9<|endoftext|>

With self-correction traces switched on, a step may first be written wrong and then taken back:

    d = a * c = 7 * 5 = 14<|step|><|back|>d = a * c = 7 * 5 = 12<|step|>...
"""
import hashlib
import random
import re
import string
from dataclasses import dataclass

from tqdm import tqdm

EOT, STEP, BACK, PAD = "<|endoftext|>", "<|step|>", "<|back|>", "<|pad|>"
OPS = ("+", "-", "*")
NAMES = string.ascii_lowercase  # one letter per variable: one token each


@dataclass(frozen=True)
class TaskConfig:
    p: int = 23             # the prime modulus
    n_assign: int = 12      # assignments per problem, for every difficulty
    max_train_d: int = 4    # training difficulties are 1..max_train_d
    max_eval_d: int = 8     # evaluation bins are 1..max_eval_d (beyond training: out of distribution)


@dataclass(frozen=True)
class Assignment:
    var: str
    op: str | None          # None for a constant, else one of OPS
    args: tuple             # (value,) for a constant; (x, y) for an operation, each a name or an int

    def text(self):
        if self.op is None:
            return f"{self.var} = {self.args[0]}"
        return f"{self.var} = {self.args[0]} {self.op} {self.args[1]}"


@dataclass(frozen=True)
class Problem:
    assignments: tuple      # of Assignment, in the order shown
    query: str

    def text(self):
        return "; ".join(a.text() for a in self.assignments) + f"; ? {self.query}"

    def by_var(self):
        return {a.var: a for a in self.assignments}


class ProblemError(ValueError):
    """A problem line that cannot be read; the message says what is wrong."""


# ----------------------------------------------------------------------------- arithmetic

def apply(op, x, y, p):
    if op == "+":
        return (x + y) % p
    if op == "-":
        return (x - y) % p
    return (x * y) % p


def values(problem, p):
    """The value of every variable, mod p. Assumes the problem is well formed (no cycles)."""
    defs, out = problem.by_var(), {}

    def value_of(arg):
        return arg if isinstance(arg, int) else evaluate(arg)

    def evaluate(var):
        if var not in out:
            a = defs[var]
            out[var] = a.args[0] if a.op is None else apply(a.op, value_of(a.args[0]), value_of(a.args[1]), p)
        return out[var]

    for a in problem.assignments:
        evaluate(a.var)
    return out


def needed_steps(problem):
    """The operations the query needs, in chain-of-thought order: depth-first, inputs first."""
    defs, order = problem.by_var(), []

    def visit(var):
        a = defs[var]
        if a.op is None or var in order:
            return
        for arg in a.args:
            if isinstance(arg, str):
                visit(arg)
        order.append(var)

    visit(problem.query)
    return order


def difficulty(problem):
    return len(needed_steps(problem))


# ----------------------------------------------------------------------------- text forms

def step_text(a, vals):
    """`d = a * c = 7 * 5 = 12`: definition, substituted values, result."""
    x, y = (v if isinstance(v, int) else vals[v] for v in a.args)
    return f"{a.text()} = {x} {a.op} {y} = {vals[a.var]}"


def solution_text(problem, p, rng=None, self_correct=0.0):
    """The chain of thought and the answer. With self_correct > 0 (and an rng), each step is
    first written with a wrong result with that probability, then taken back with BACK."""
    vals, defs, out = values(problem, p), problem.by_var(), []
    for var in needed_steps(problem):
        a = defs[var]
        if self_correct > 0 and rng.random() < self_correct:
            wrong = dict(vals)
            wrong[var] = (vals[var] + rng.randrange(1, p)) % p
            out.append(step_text(a, wrong) + STEP + BACK)
        out.append(step_text(a, vals) + STEP)
    return "".join(out) + f"answer: {vals[problem.query]}" + EOT


def prompt_text(line):
    """What the model is given: the problem line and a newline; the solution follows."""
    return line + "\n"


_ASSIGN = re.compile(r"([a-z])\s*=\s*(?:([0-9]+)|([a-z]|[0-9]+)\s*([-+*])\s*([a-z]|[0-9]+))")  # spaces optional: a=7, d = a*c


def parse_problem(line, p):
    """Read the plain-text form (`a = 7; d = a * c; ...; ? d`). Raises ProblemError."""
    parts = [s.strip() for s in line.strip().split(";")]
    if len(parts) < 2 or not parts[-1].startswith("?"):
        raise ProblemError("a problem is `assignment; assignment; ...; ? variable`")
    query = parts[-1][1:].strip()
    assignments, seen = [], set()
    for part in parts[:-1]:
        m = _ASSIGN.fullmatch(part)
        if not m:
            raise ProblemError(f"cannot read assignment {part!r}: write `x = 7` or `x = a * b` (ops + - *)")
        var, const, x, op, y = m.groups()
        if var in seen:
            raise ProblemError(f"variable {var} is assigned twice")
        seen.add(var)
        args = (const,) if const is not None else (x, y)
        if any(t.isdigit() and (len(t) > 9 or int(t) >= p) for t in args):
            raise ProblemError(f"in {part!r}: numbers must be below the modulus {p}")
        assignments.append(Assignment(var, op, tuple(int(t) if t.isdigit() else t for t in args)))
    if query not in seen:
        raise ProblemError(f"the query ? {query} names no assigned variable")
    problem = Problem(tuple(assignments), query)
    _check_graph(problem)
    return problem


def _check_graph(problem):
    defs, state = problem.by_var(), {}

    def visit(var):  # state: 1 on the current path, 2 done
        if state.get(var) == 1:
            raise ProblemError(f"variable {var} depends on itself")
        if state.get(var) == 2:
            return
        state[var] = 1
        for arg in defs[var].args:
            if isinstance(arg, str):
                if arg not in defs:
                    raise ProblemError(f"{defs[var].text()!r} uses {arg}, which is never assigned")
                visit(arg)
        state[var] = 2

    for var in defs:
        visit(var)


# ----------------------------------------------------------------------------- generator

def generate_problem(rng, d, cfg):
    """A random problem of difficulty exactly d with cfg.n_assign assignments."""
    if not 1 <= d <= cfg.n_assign - 1:
        raise ValueError(f"difficulty {d} needs 1 <= d < n_assign = {cfg.n_assign}")
    names = rng.sample(NAMES, cfg.n_assign)
    needed, consts, unused, used = [], [], [], []

    def leaf():
        # an operand that does not consume an unused result: a literal, a constant variable
        # (new or shared) or an earlier result used again (the graph is a DAG, not a tree)
        r = rng.random()
        if r < 0.15 and used:
            return rng.choice(used)
        if r < 0.35 and consts:
            return rng.choice(consts)
        if r < 0.75 and len(names) > d - len(needed_ops):  # keep a name for every operation
            a = Assignment(names.pop(), None, (rng.randrange(cfg.p),))
            needed.append(a)
            consts.append(a.var)
            return a.var
        return rng.randrange(cfg.p)

    needed_ops = []
    for i in range(d):
        ops_left_after = d - 1 - i
        # every result must feed the query: consume enough unused results now that the
        # remaining operations (each consumes at most 2, adds 1) can still use them all
        k = rng.randint(max(0, len(unused) - ops_left_after), min(2, len(unused)))
        args = [unused.pop(rng.randrange(len(unused))) for _ in range(k)]
        used.extend(args)
        while len(args) < 2:
            args.append(leaf())
        rng.shuffle(args)
        a = Assignment(names.pop(), rng.choice(OPS), tuple(args))
        needed.append(a)
        needed_ops.append(a.var)
        unused.append(a.var)
    assert len(unused) == 1
    query = unused[0]

    # distractors: constants and operations over anything defined so far, never used by the query
    defined, distractors = [a.var for a in needed], []
    while names:
        var = names.pop()
        if rng.random() < 0.35:
            a = Assignment(var, None, (rng.randrange(cfg.p),))
        else:
            args = tuple(rng.choice(defined) if rng.random() < 0.7 else rng.randrange(cfg.p) for _ in range(2))
            a = Assignment(var, rng.choice(OPS), args)
        distractors.append(a)
        defined.append(var)
    assignments = needed + distractors
    rng.shuffle(assignments)
    return Problem(tuple(assignments), query)


def problem_hash(problem):
    """A hash of the problem itself, independent of the order its assignments are listed in."""
    canon = "; ".join(sorted(a.text() for a in problem.assignments)) + f"; ? {problem.query}"
    return int.from_bytes(hashlib.sha256(canon.encode()).digest()[:8], "big")


def split_of(problem):
    """train / val / test, fixed by the problem's hash: the splits can never share a problem."""
    h = problem_hash(problem) % 20
    return "test" if h == 0 else "val" if h == 1 else "train"


def sample_split(split, n, difficulties, cfg, seed, desc=None):
    """n problems of the given split, difficulties drawn uniformly, no problem twice (desc: a progress bar)."""
    rng, seen, out = random.Random(f"{seed}-{split}"), set(), []
    with tqdm(total=n, desc=desc, disable=desc is None, leave=False) as bar:
        while len(out) < n:
            problem = generate_problem(rng, rng.choice(difficulties), cfg)
            h = problem_hash(problem)
            if split_of(problem) == split and h not in seen:
                seen.add(h)
                out.append(problem)
                bar.update()
    return out
