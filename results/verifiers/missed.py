"""Which wrong steps the PRM misses and the policy's confidence catches: on train_prm.py's evaluation
samples of a finished run, per trained bin, the step AUROC of each kind of wrong step against all
right steps (the first wrong step; a later step, wrong by the first-error rule; the answer line
after a wrong chain), for the PRM and the confidence, and the first wrong steps the PRM passes:
what kind of mistake each is (mistake), against all first wrong steps, and a few of them.

    OMP_NUM_THREADS=1 python results/verifiers/missed.py out/tiny [SEED]
"""
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

import torch  # noqa: E402

import train_prm as tp  # noqa: E402
from common import PRESETS, read_split, read_task  # noqa: E402
from data.task import EOT, STEP, values  # noqa: E402
from data.tokenizer import decode, special_id  # noqa: E402
from data.verify import _STEP  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402
from reward import load_reward_model  # noqa: E402


def kind(s, j):
    """right, first (the first wrong step), later (wrong after it), with -answer for the answer line."""
    y, answer = s.labels[j], "-answer" if s.tokens[s.ends[j]] == special_id(EOT) else ""
    return ("right" if y else "first" if j == s.labels.index(0) else "later") + answer


def mistake(s, j, p):
    """What is wrong with step j, the first wrong step (every step before it is right): the
    variable (not an operation, or an operand not computed yet), the definition copied wrong, an
    operand's value, or the result; "again" when it writes a variable a step before it wrote."""
    steps, defs, truth = decode(s.solution).split(STEP), s.problem.by_var(), values(s.problem, p)
    if j >= len(steps) or not _STEP.fullmatch(steps[j]):
        return "form"
    var, a, op, b, va, op2, vb, r = _STEP.fullmatch(steps[j]).groups()
    known = {v for v, d in defs.items() if d.op is None} | {t[:1] for t in steps[:j]}
    d = defs.get(var)
    if var in {t[:1] for t in steps[:j]}:
        return "again"
    if d is None or d.op is None or any(isinstance(x, str) and x not in known for x in d.args):
        return "variable"
    if (a, op, b) != tuple(str(x) for x in (d.args[0], d.op, d.args[1])) or op2 != op:
        return "definition"
    if (va, vb) != tuple(str(x if isinstance(x, int) else truth[x]) for x in d.args):
        return "operand value"
    return "result"


def evaluation(out, seed):
    """The run's task, and train_prm.py's evaluation samples (its own draw), scored by the PRM and the confidence."""
    preset, task = PRESETS["tiny"], read_task(out)
    policy = model_from_checkpoint(load_checkpoint(os.path.join(out, "sft", "ckpt.pt"))).eval()
    prm = load_reward_model(os.path.join(out, "prm", "ckpt.pt"), policy, "math", "cpu")
    judged_on = torch.Generator().manual_seed(seed + tp.EVAL_STREAM)  # train_prm.py's own evaluation draw
    samples, _ = tp.evaluation_samples(policy, prm, prm, read_split(out, "test"), preset.prm.eval_problems,
                                       preset.prm.eval_samples, preset.prm.temperature, task.p, judged_on, preset.prm.gen_batch)
    return task, samples


def main(out, seed):
    task, samples = evaluation(out, seed)
    for b in range(1, task.max_train_d + 1):
        steps = {}
        for s in (s for s in samples if s.difficulty == b):
            for j in range(len(s.labels)):
                steps.setdefault(kind(s, j), []).append((s.scores["prm"][j], s.scores["confidence"][j]))
        right = steps.pop("right", []) + steps.pop("right-answer", [])
        for k, wrong in sorted(steps.items()):
            labels = [1] * len(right) + [0] * len(wrong)
            prm_auc, conf_auc = (tp.auroc([x[i] for x in right + wrong], labels) for i in (0, 1))
            print(f"d={b} {k:13s} {len(wrong):4d} steps: AUROC against the {len(right)} right steps: PRM {prm_auc:.3f}, "
                  f"confidence {conf_auc:.3f}")
        missed = [s for s in samples if s.difficulty == b and 0 in s.labels and s.scores["prm"][s.labels.index(0)] > 0.5]
        wrong = [s for s in samples if s.difficulty == b and 0 in s.labels[:-1]]  # a wrong step before the answer
        for name, group in (("all first wrong steps", wrong), ("those the PRM passes (above 1/2)", missed)):
            kinds = Counter(mistake(s, s.labels.index(0), task.p) for s in group if s.labels.index(0) < len(s.labels) - 1)
            print(f"d={b}: {name}: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
        for s in missed[:4]:
            j = s.labels.index(0)
            print(f"    passed: {decode(s.solution)!r} step {j}: PRM {s.scores['prm'][j]:.2f}, "
                  f"lowest log-probability so far {s.scores['confidence'][j]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/tiny", int(sys.argv[2]) if len(sys.argv) > 2 else 0)
