"""Does the PRM judge early steps worse than late ones? Step AUROC by the step's position in its
chain, on the very samples of train_prm.py's evaluation (the same stream, so the per-bin numbers
match prm/metrics.json), PRM against the policy's confidence, with the paired interval over problems.

A step at position j is scored by what the chain says up to there; under the first-error rule a
step is wrong once any step before it is. Tree search (results/search/README.md) steers by these
prefix scores, best-of-N by the whole chain's.

    OMP_NUM_THREADS=1 python results/verifiers/position.py out/tiny 0
"""
import os
import sys
from dataclasses import replace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import train_prm  # noqa: E402
from common import PRESETS, read_split, read_task  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402
from reward import load_reward_model  # noqa: E402


def main(out, seed):
    preset, task = PRESETS["tiny"], read_task(out)
    policy = model_from_checkpoint(load_checkpoint(os.path.join(out, "sft", "ckpt.pt"))).eval()
    prm, orm = (load_reward_model(train_prm.reward_model_path(out, kind), policy, "sdpa", "cpu") for kind in ("prm", "orm"))
    judged_on = torch.Generator("cpu").manual_seed(seed + train_prm.EVAL_STREAM)
    samples, _ = train_prm.evaluation_samples(policy, prm, orm, read_split(out, "test"), preset.prm.eval_problems,
                                              preset.prm.eval_samples, preset.prm.temperature, task.p, judged_on,
                                              preset.prm.gen_batch)
    in_range = [s for s in samples if s.difficulty <= task.max_train_d]
    pooled = train_prm.auroc([q for s in in_range for q in s.scores["prm"]], [y for s in in_range for y in s.labels])
    print(f"seed {seed}: {len(in_range)} samples of d = 1..{task.max_train_d} (PRM step AUROC pooled {pooled:.4f}: "
          f"prm/metrics.json's step_auroc, if these are its samples); step AUROC by position (1 = first step)")
    print("| position | steps | wrong | PRM | confidence | PRM - confidence (95% interval) |")
    print("|---:|---:|---:|---:|---:|---|")
    for j in range(max(len(s.labels) for s in in_range)):
        at_j = [replace(s, labels=s.labels[j:j + 1], scores={k: s.scores[k][j:j + 1] for k in ("prm", "confidence")})
                for s in in_range if j < len(s.labels)]  # each sample cut to its step j
        groups = train_prm.problem_steps(at_j)
        labels = [y for g in groups.values() for y in g[2]]
        wrong = labels.count(0)
        if wrong < 10 or wrong == len(labels):
            continue
        prm_auc = train_prm.auroc([q for g in groups.values() for q in g[0]], labels)
        conf_auc = train_prm.auroc([q for g in groups.values() for q in g[1]], labels)
        diff, lo, hi = train_prm.auroc_difference(list(groups.values()))
        print(f"| {j + 1} | {len(labels)} | {wrong} | {prm_auc:.3f} | {conf_auc:.3f} | {diff:+.3f} ({lo:+.3f}, {hi:+.3f}) |",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
