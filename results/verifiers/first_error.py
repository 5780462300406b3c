"""Where a verifier puts the first error, and why "the lowest-scored step" is the wrong test
(results/verifiers/README.md): on train_prm.py's evaluation samples of a finished run, per bin,
the PRM's step AUROC as scored and with its scores made non-increasing (the running minimum), how
often some later step scores lower than the first wrong one, and the first-error rates of the PRM
and the policy's confidence (train_prm.first_error_rates: located, lowest, first below 1/2).

    OMP_NUM_THREADS=1 python results/verifiers/first_error.py out/tiny
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

import torch  # noqa: E402

import train_prm as tp  # noqa: E402
from common import PRESETS, read_split, read_task  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402
from reward import load_reward_model  # noqa: E402


def main(out):
    preset, task = PRESETS["tiny"], read_task(out)
    policy = model_from_checkpoint(load_checkpoint(os.path.join(out, "sft", "ckpt.pt"))).eval()
    prm, orm = (load_reward_model(os.path.join(out, "prm", name), policy, "math", "cpu") for name in ("ckpt.pt", "orm.pt"))
    samples, bins = tp.evaluation_samples(policy, prm, orm, read_split(out, "test"), preset.prm.eval_problems,
                                          preset.prm.eval_samples, preset.prm.temperature, task.p,
                                          torch.Generator().manual_seed(0), preset.prm.gen_batch)
    for b in bins:
        group = [s for s in samples if s.difficulty == b]
        labels = [y for s in group for y in s.labels]
        auroc = {how: tp.auroc([q for s in group for q in f(s.scores["prm"])], labels)
                 for how, f in (("as scored", list), ("running min", tp.running_min))}
        firsts = [(s.scores["prm"], s.labels.index(0)) for s in group if 0 in s.labels[:-1]]  # a wrong step, not the last
        later = [min(scores[j + 1:]) < scores[j] for scores, j in firsts]
        prm, conf = tp.first_error_rates(group, "prm"), tp.first_error_rates(group, "confidence")
        print(f"d={b}: step AUROC as scored {auroc['as scored']:.3f}, running min {auroc['running min']:.3f}; a later step "
              f"lower than the first wrong one in {sum(later) / max(1, len(later)):.3f} of {len(later)}; first error located "
              f"PRM {prm['first_error_located_rate']:.3f}, confidence {conf['first_error_located_rate']:.3f}; PRM's lowest "
              f"{prm['first_error_lowest_rate']:.3f}, first below 1/2 {prm['first_error_found_rate']:.3f} "
              f"({prm['first_error_solutions']} solutions)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/tiny")
