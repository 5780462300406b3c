"""What did RL change: the number of steps a policy writes, or the steps themselves?

Greedy solutions of the test problems of each bin, split by the steps written against the d the
problem needs (fewer, exactly d, more; a step later taken back counts as written), with the answers
right in each part; and the solutions that take a step back (the back token of self-correction traces). Experiment only; the results are in
results/rl/README.md.

    python results/rl/steps.py OUT CKPT [CKPT ...]     # e.g. out/tiny out/tiny/sft/ckpt.pt out/tiny/rl/ckpt.pt
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from common import read_split, read_task, sample_and_verify  # noqa: E402
from data.task import BACK, parse_problem, prompt_text  # noqa: E402
from data.tokenizer import encode, special_id  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402


def step_counts(model, records, p):
    """{'fewer' | 'exactly d' | 'more' | 'back': [solutions, right answers]} over the greedy
    solutions; 'back' counts those with a back token (also counted in their part)."""
    results = sample_and_verify(model, [encode(prompt_text(r["problem"])) for r in records],
                                [parse_problem(r["problem"], p) for r in records], p)
    parts = {"fewer": [0, 0], "exactly d": [0, 0], "more": [0, 0], "back": [0, 0]}
    for r, (tokens, _, v) in zip(records, results):
        n = len(v.step_correct)
        kinds = ["fewer" if n < r["difficulty"] else "more" if n > r["difficulty"] else "exactly d"]
        for kind in kinds + ["back"] * (special_id(BACK) in tokens):
            parts[kind][0] += 1
            parts[kind][1] += int(v.answer_correct)
    return parts


def main(out, *ckpts):
    task = read_task(out)
    test = read_split(out, "test")
    print("| policy | d | fewer steps than d: n (right) | exactly d: n (right) | more: n (right) | took a step back: n (right) | accuracy |")
    print("|---|---:|---|---|---|---|---:|")
    for ckpt in ckpts:
        model = model_from_checkpoint(load_checkpoint(ckpt)).eval()
        for d in range(1, task.max_train_d + 1):
            parts = step_counts(model, [r for r in test if r["difficulty"] == d], task.p)
            cells = " | ".join(f"{n} ({k})" for n, k in parts.values())
            n, right = (sum(parts[k][i] for k in ("fewer", "exactly d", "more")) for i in (0, 1))
            print(f"| {ckpt} | {d} | {cells} | {right / n:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python results/rl/steps.py OUT CKPT [CKPT ...]")
    main(*sys.argv[1:])
