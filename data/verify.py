"""The exact step verifier. Garbage in, a clean verdict out: `verify` never raises.

A solution is split at the step token. Every piece before the last is a step, `x = a op b =
va op vb = r`, which is correct when
  - x is a variable the problem defines by an operation, and `a op b` is its definition;
  - each operand variable is already known: a constant of the problem, or the result of an
    earlier correct step that was not taken back;
  - va and vb are the true values of the operands, and r is the true value of x (mod p).
A step that begins with the back token first takes back the step before it (one per token).
The piece after the last step token is the answer line, `answer: N`. Anything after the
end-of-text token is ignored.
"""
import re
from dataclasses import dataclass, field

from data.task import BACK, EOT, PAD, STEP, values

_STEP = re.compile(r"([a-z]) = ([a-z]|[0-9]+) ([-+*]) ([a-z]|[0-9]+) = ([0-9]+) ([-+*]) ([0-9]+) = ([0-9]+)")
_ANSWER = re.compile(r"answer: ([0-9]+)")


@dataclass
class Verdict:
    step_correct: list = field(default_factory=list)  # one bool per step
    first_error: int | None = None                     # index of the first wrong step, None if none
    answer: int | None = None                          # the answer given, None if no answer line
    answer_correct: bool = False
    finished: bool = False                             # the end-of-text token was reached


def _number(text):
    """An int written in canonical form (no leading zeros, no sign), else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 9:  # "²" is a digit to isdigit, not to int; no value has 10 digits
        return None
    return int(text) if str(int(text)) == text else None


def _check_step(text, defs, truth, known):
    m = _STEP.fullmatch(text)
    if not m:
        return None
    var, a, op, b, va, op2, vb, r = m.groups()
    d = defs.get(var)
    if d is None or d.op is None or op != d.op or op2 != op:
        return None
    for written, arg, value in ((a, d.args[0], va), (b, d.args[1], vb)):
        if isinstance(arg, int):
            if _number(written) != arg or _number(value) != arg:
                return None
        elif written != arg or arg not in known or _number(value) != truth[arg]:
            return None
    return var if _number(r) == truth[var] else None


def take_backs(text):
    """A step's text without the back tokens it opens with, and how many there were."""
    backs = 0
    while text.startswith(BACK):
        text, backs = text[len(BACK):], backs + 1
    return text, backs


def verify(problem, solution, p):
    """Check a chain of thought against the problem. Returns a Verdict; never raises."""
    verdict = Verdict()
    if not isinstance(solution, str):
        return verdict
    defs, truth = problem.by_var(), values(problem, p)
    verdict.finished = EOT in solution
    text = solution.split(EOT)[0].replace(PAD, "")
    *steps, tail = text.split(STEP)
    known = {v for v, a in defs.items() if a.op is None}
    history = []  # per live step, the variable it newly made known (None if it made none)
    for raw in steps:
        raw, backs = take_backs(raw)
        ok = backs <= len(history)
        for _ in range(min(backs, len(history))):
            undone = history.pop()
            if undone is not None:
                known.discard(undone)
        var = _check_step(raw.strip(), defs, truth, known) if ok else None
        verdict.step_correct.append(var is not None)
        history.append(var if var not in known else None)
        if var is not None:
            known.add(var)
    wrong = [i for i, ok in enumerate(verdict.step_correct) if not ok]
    verdict.first_error = wrong[0] if wrong else None
    m = _ANSWER.fullmatch(tail.strip())
    if m and _number(m.group(1)) is not None:
        verdict.answer = int(m.group(1))
        verdict.answer_correct = verdict.answer == truth[problem.query]
    return verdict
