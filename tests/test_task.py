"""The task generator, the plain-text form and the splits (data/task.py)."""
import random

import pytest

from data.task import (TaskConfig, ProblemError, difficulty, generate_problem, needed_steps, parse_problem,
                       problem_hash, sample_split, solution_text, split_of, values)
from data.verify import verify

CFG = TaskConfig(n_assign=12, max_train_d=4, max_eval_d=8)


def test_generated_problems_have_the_asked_difficulty_and_a_fixed_length():
    rng = random.Random(0)
    for d in range(1, CFG.n_assign):
        for _ in range(30):
            problem = generate_problem(rng, d, CFG)
            assert difficulty(problem) == d
            assert len(problem.assignments) == CFG.n_assign
            assert len({a.var for a in problem.assignments}) == CFG.n_assign


def test_plain_text_form_round_trips():
    rng = random.Random(1)
    for d in (1, 3, 8):
        problem = generate_problem(rng, d, CFG)
        assert parse_problem(problem.text(), CFG.p) == problem


def test_hand_written_problem_is_solved_in_dependency_order():
    problem = parse_problem("e = d - 3; a = 7; x = a + a; c = 5; d = a * c; ? e", 23)
    assert needed_steps(problem) == ["d", "e"]
    assert values(problem, 23)["e"] == (7 * 5 - 3) % 23
    assert solution_text(problem, 23) == ("d = a * c = 7 * 5 = 12<|step|>e = d - 3 = 12 - 3 = 9<|step|>"
                                          "answer: 9<|endoftext|>")


def test_spaces_around_signs_are_optional_in_the_plain_text_form():
    spaced = parse_problem("a = 7; c = 5; d = a * c; e = d - 3; ? e", 23)
    assert parse_problem("a=7; c =5;d=a*c ; e=d-3; ? e", 23) == spaced
    assert parse_problem("a=7;  d = a  -  3; ? d", 23).text() == "a = 7; d = a - 3; ? d"


def test_reference_solutions_pass_the_verifier():
    rng = random.Random(2)
    for d in range(1, 9):
        problem = generate_problem(rng, d, CFG)
        v = verify(problem, solution_text(problem, CFG.p), CFG.p)
        assert v.answer_correct and v.first_error is None and all(v.step_correct) and v.finished
        assert len(v.step_correct) == d


def test_self_correction_trace_has_a_wrong_step_then_back_then_the_right_step():
    rng = random.Random(3)
    problem = generate_problem(rng, 4, CFG)
    text = solution_text(problem, CFG.p, random.Random(0), self_correct=1.0)
    assert text.count("<|back|>") == 4
    v = verify(problem, text, CFG.p)
    assert v.step_correct == [False, True] * 4  # each wrong step, then its correction
    assert v.first_error == 0 and v.answer_correct




@pytest.mark.parametrize("line, message", [
    ("a = 7; b = a +; ? b", "cannot read assignment"),
    ("a = 7; a = 3; ? a", "assigned twice"),
    ("a = 7; b = a * z; ? b", "never assigned"),
    ("a = b + 1; b = a + 1; ? a", "depends on itself"),
    ("a = 7; ? q", "names no assigned variable"),
    ("a = 30; ? a", "below the modulus"),
    ("a = 7; b = a * " + "9" * 5000 + "; ? b", "below the modulus"),  # too long for int() to read: refused, not a crash
    ("a = \u0663; b = a + 1; ? b", "cannot read assignment"),  # an Arabic-Indic three is not a number here
    ("a = 7", "a problem is"),
    ("", "a problem is"),
])
def test_malformed_lines_are_refused_with_a_reason(line, message):
    with pytest.raises(ProblemError, match=message):
        parse_problem(line, 23)


def test_splits_are_disjoint_by_problem_hash_whatever_the_order_of_assignments():
    cfg = TaskConfig(n_assign=6, max_train_d=2, max_eval_d=4)
    splits = {s: sample_split(s, 200 if s == "train" else 40, [1, 2], cfg, seed=0) for s in ("train", "val", "test")}
    hashes = {s: {problem_hash(p) for p in ps} for s, ps in splits.items()}
    assert not hashes["train"] & hashes["test"] and not hashes["train"] & hashes["val"] and not hashes["val"] & hashes["test"]
    assert all(split_of(p) == s for s, ps in splits.items() for p in ps)
    problem = splits["test"][0]
    shuffled = type(problem)(tuple(reversed(problem.assignments)), problem.query)
    assert problem_hash(shuffled) == problem_hash(problem)  # the order shown does not change the split
