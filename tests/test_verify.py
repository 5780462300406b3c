"""The exact verifier (data/verify.py): hand-checked verdicts, and thousands of mutated traces
scored against an independent re-implementation written here from the rules alone."""
import random
import re

from data.task import TaskConfig, generate_problem, parse_problem, solution_text
from data.tokenizer import decode, encode, get_tokenizer
from data.verify import verify

P = 23
PROBLEM = parse_problem("e = d - 3; a = 7; x = a + a; c = 5; d = a * c; ? e", P)


def steps(*lines, answer=9):
    return "".join(line + "<|step|>" for line in lines) + f"answer: {answer}<|endoftext|>"


def test_a_correct_trace():
    v = verify(PROBLEM, steps("d = a * c = 7 * 5 = 12", "e = d - 3 = 12 - 3 = 9"), P)
    assert v.step_correct == [True, True] and v.first_error is None and v.answer == 9 and v.answer_correct and v.finished


def test_wrong_arithmetic_and_what_follows_from_it():
    v = verify(PROBLEM, steps("d = a * c = 7 * 5 = 13", "e = d - 3 = 13 - 3 = 10", answer=10), P)
    assert v.step_correct == [False, False] and v.first_error == 0 and not v.answer_correct


def test_a_step_before_its_inputs_is_wrong():
    v = verify(PROBLEM, steps("e = d - 3 = 12 - 3 = 9", "d = a * c = 7 * 5 = 12"), P)
    assert v.step_correct == [False, True] and v.first_error == 0 and v.answer_correct


def test_definition_and_substitution_must_match_the_problem():
    cases = ["d = a + c = 7 + 5 = 12",   # wrong operation
             "d = c * a = 5 * 7 = 12",   # operands swapped: not the definition as written
             "d = a * c = 7 * 6 = 12",   # wrong substituted value
             "a = 7",                    # a constant is not a step
             "q = a * c = 7 * 5 = 12",   # no such variable
             "d = a * c = 7 * 5 = 012"]  # not a canonical number
    for bad in cases:
        assert verify(PROBLEM, steps(bad), P).step_correct == [False], bad


def test_back_takes_back_the_previous_step():
    v = verify(PROBLEM, steps("d = a * c = 7 * 5 = 14", "<|back|>d = a * c = 7 * 5 = 12", "e = d - 3 = 12 - 3 = 9"), P)
    assert v.step_correct == [False, True, True] and v.first_error == 0 and v.answer_correct
    # taking back a right step makes its variable unknown again
    v = verify(PROBLEM, steps("d = a * c = 7 * 5 = 12", "<|back|>e = d - 3 = 12 - 3 = 9"), P)
    assert v.step_correct == [True, False]
    # nothing to take back
    assert verify(PROBLEM, steps("<|back|>d = a * c = 7 * 5 = 12"), P).step_correct == [False]


def test_answer_line_and_end_of_text():
    assert verify(PROBLEM, "answer: 9", P).answer_correct  # right answer, no steps, not finished
    assert not verify(PROBLEM, "answer: 9", P).finished
    assert verify(PROBLEM, "answer: 8<|endoftext|>", P).answer == 8
    assert verify(PROBLEM, "answer: 9<|step|>", P).answer is None  # the answer must be the last line
    assert verify(PROBLEM, "answer: 9<|endoftext|>answer: 3", P).answer_correct  # after end-of-text: ignored


# ----------------------------------------------------------------------------- fuzzing

def reference_verdict(problem_line, text, p):
    """The same rules, written independently: (step verdicts, first error, answer right)."""
    defs, consts = {}, {}
    for part in problem_line.split(";")[:-1]:
        left, right = part.strip().split(" = ")
        if right.isdigit():
            consts[left] = int(right)
        else:
            defs[left] = right.split(" ")
    value = dict(consts)
    while len(value) < len(consts) + len(defs):
        for var, (x, op, y) in defs.items():
            if var not in value and all(t.isdigit() or t in value for t in (x, y)):
                vx, vy = (int(t) if t.isdigit() else value[t] for t in (x, y))
                value[var] = eval(f"({vx} {op} {vy}) % {p}")
    query = problem_line.split("?")[-1].strip()
    body = text.split("<|endoftext|>")[0].replace("<|pad|>", "")
    pieces = body.split("<|step|>")
    verdicts, live = [], []  # live: (variable made known or None) per step not taken back
    for piece in pieces[:-1]:
        n_back = len(re.match(r"(<\|back\|>)*", piece).group(0)) // len("<|back|>")
        piece = piece[n_back * len("<|back|>"):].strip()
        ok = n_back <= len(live)
        del live[len(live) - min(n_back, len(live)):]
        known = set(consts) | {v for v in live if v}
        words = piece.split(" ")  # var = x op y = vx op vy = result
        if ok and len(words) == 11 and words[1] == words[5] == words[9] == "=" and words[0] in defs:
            var, (x, op, y) = words[0], defs[words[0]]
            ok = words[2:5] == [x, op, y] and words[7] == op and words[10] == str(value[var])
            for written, shown in ((x, words[6]), (y, words[8])):
                expected = written if written.isdigit() else (str(value[written]) if written in known else None)
                ok = ok and shown == expected
        else:
            ok = False
        verdicts.append(ok)
        live.append(words[0] if ok and words[0] not in known else None)
    m = re.fullmatch(r"answer: (0|[1-9][0-9]*)", pieces[-1].strip())
    answer_right = bool(m) and int(m.group(1)) == value[query]
    first = verdicts.index(False) if False in verdicts else None
    return verdicts, first, answer_right


def mutate(rng, ids, vocab):
    ids = list(ids)
    digits = [i for i in range(vocab) if decode([i]).isdigit()]
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(7)
        if not ids:
            break
        i = rng.randrange(len(ids))
        if kind == 0:
            del ids[i]
        elif kind == 1:
            ids.insert(i, ids[i])
        elif kind == 2:
            j = rng.randrange(len(ids))
            ids[i], ids[j] = ids[j], ids[i]
        elif kind == 3:
            ids[i] = rng.choice(digits)
        elif kind == 4:
            ids = ids[:i]
        elif kind == 5:
            ids.insert(i, rng.randrange(vocab))
        else:
            ids[i] = rng.choice(digits) if rng.random() < 0.5 else rng.randrange(vocab)
    return ids


def test_verifier_never_raises_and_agrees_with_an_independent_recomputation_on_mutated_traces():
    rng, cfg, vocab = random.Random(0), TaskConfig(n_assign=10, max_train_d=4, max_eval_d=8), get_tokenizer().n_vocab
    disagreements, n_wrong_steps = [], 0
    for trial in range(3000):
        problem = generate_problem(rng, rng.randint(1, 8), cfg)
        text = solution_text(problem, cfg.p, rng, self_correct=0.2 if trial % 4 == 0 else 0.0)
        mutated = decode(mutate(rng, encode(text), vocab))
        v = verify(problem, mutated, cfg.p)
        expected = reference_verdict(problem.text(), mutated, cfg.p)
        if (v.step_correct, v.first_error, v.answer_correct) != expected:
            disagreements.append((problem.text(), mutated))
        n_wrong_steps += v.first_error is not None
    assert not disagreements[:3]
    assert n_wrong_steps > 1000  # the mutations really break steps


def test_verifier_never_raises_on_random_strings_and_bytes():
    rng = random.Random(1)
    problem = PROBLEM
    alphabet = "ade c=+-*0123456789:answer <|step|><|back|><|endoftext|><|pad|>\n\x00é😀"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        verify(problem, text, P)
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))).decode("utf-8", errors="replace")
        verify(problem, raw, P)
    for text in ("answer: " + "9" * 5000, "answer: \u00b2"):  # digits int() cannot read: wrong, never an exception
        assert verify(problem, text, P).answer_correct is False
    assert verify(problem, "d = a * c = 7 * 5 = " + "1" * 5000 + "<|step|>", P).first_error == 0
    for junk in (None, 3, b"answer: 9", ["answer: 9"]):
        assert verify(problem, junk, P).answer_correct is False
