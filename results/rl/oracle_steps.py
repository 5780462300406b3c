"""RL with a perfect process reward: is the PRM's noise what keeps process rewards from helping?

Runs train_rl.py with --reward both, but each step end is rewarded by the exact verifier's label
(first-error rule: 1 while every step so far is right, else 0; the answer line right only if its
chain was), minus 1/2, where train_rl.prm_step_rewards puts the PRM's probability minus 1/2.
Everything else is train_rl.py's. Experiment only; the result is in results/rl/README.md.

    OMP_NUM_THREADS=1 python results/rl/oracle_steps.py --preset tiny --out COPY [train_rl flags]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import train_rl  # noqa: E402
from common import run_cli  # noqa: E402
from reward import step_ends  # noqa: E402

_verdicts = []  # the last rollout's verdicts, in the order of its prompts
_rollout = train_rl.rollout


def rollout(*args, **kwargs):
    prompts, responses, verdicts = _rollout(*args, **kwargs)
    _verdicts[:] = verdicts
    return prompts, responses, verdicts


def oracle_labels(verdict, n_ends):
    """The first-error rule's label of each step end: the steps, then the answer line."""
    labels, right = [], True
    for ok in verdict.step_correct:
        right = right and ok
        labels.append(float(right))
    labels.append(float(right and verdict.answer_correct))  # the end-of-text closes the answer line
    return labels[:n_ends]


def oracle_step_rewards(prm, prompts, responses, T):
    rewards = torch.zeros(len(prompts), T)
    for i, (p, r, v) in enumerate(zip(prompts, responses, _verdicts)):
        ends = step_ends(p + r, len(p))
        for position, label in zip(ends, oracle_labels(v, len(ends))):
            rewards[i, position - 1] = label - 0.5
    return rewards


train_rl.rollout = rollout
train_rl.prm_step_rewards = oracle_step_rewards

if __name__ == "__main__":
    if "--reward" not in sys.argv:
        sys.argv += ["--reward", "both"]
    run_cli(train_rl.main, resumable=True)
