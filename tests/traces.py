"""Hand-made chains of thought for one problem, right and wrong step by step: shared by the tests
of the step labels (test_prm.py) and of the reward scores (test_reward.py)."""
from data.task import parse_problem

P = 23
LINE = "e = d - 3; a = 7; x = a + a; c = 5; d = a * c; ? e"
PROBLEM = parse_problem(LINE, P)
D_RIGHT, D_WRONG = "d = a * c = 7 * 5 = 12", "d = a * c = 7 * 5 = 14"
E_RIGHT, X_WRONG = "e = d - 3 = 12 - 3 = 9", "x = a + a = 7 + 7 = 15"


def trace(*steps, answer=9, finished=True):
    return "".join(s + "<|step|>" for s in steps) + f"answer: {answer}" + ("<|endoftext|>" if finished else "")
