"""Does the temperature of the reward models' training samples matter? (issue 17, points 1 and 3)

The PRM and the ORM learn from one sample of the SFT policy per training problem at temperature 1.0
(PRMConfig.temperature), while the search grid draws its candidates at 0.7: the verifiers judge, in
search, a distribution of chains they did not learn from. This retrains both reward models from
samples at temperature T (everything else as train_prm.py), judges them with train_prm.py's own
evaluation at 1.0 and at 0.7, and reruns best-of-N on the held-out grid problems (the second 100
test problems of d = 2, 3, as results/search/groups.py, draw 0).

    cp -r out/tiny COPY && OMP_NUM_THREADS=1 python results/verifiers/train_temperature.py COPY SEED T
    (T = base keeps COPY's reward models: the baseline on the same evaluation; writes
    results/verifiers/runs/train_temperature_seed{SEED}_{T}.json)
"""
import dataclasses
import json
import os
import shutil
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "results", "search"))
import common  # noqa: E402
import train_prm  # noqa: E402
from common import autocast, paired_difference  # noqa: E402
from groups import estimates  # noqa: E402
from temperature import held_out_setup  # noqa: E402

ROWS = [("bon-prm", 16, "bon-orm", 16), ("bon-prm", 64, "bon-prm", 16), ("bon-orm", 16, "majority", 16),
        ("bon-prm", 16, "bon-confidence", 16), ("prm-vote", 16, "greedy", 1), ("bon-prm", 64, "bon-orm", 64)]
GRID_T = common.PRESETS["tiny"].search.temperature


def with_prm_temperature(t):
    tiny = common.PRESETS["tiny"]
    common.PRESETS["tiny"] = dataclasses.replace(tiny, prm=dataclasses.replace(tiny.prm, temperature=t))


def main(out, seed, t):
    base = ["--preset", "tiny", "--out", out, "--seed", str(seed)]
    trained_at = common.PRESETS["tiny"].prm.temperature
    if t != "base":
        with_prm_temperature(float(t))
        train_prm.main(base + ["--only", "prm"])
        train_prm.main(base + ["--only", "orm"])
    result = {"out": out, "seed": seed, "train_temperature": trained_at if t == "base" else float(t), "evaluation": {}}
    for eval_t in (1.0, GRID_T):  # train_prm.py's evaluation: step AUROC, first error located, outcome AUROC
        with_prm_temperature(eval_t)
        metrics = train_prm.main(base + ["--only", "evaluate"])
        shutil.copy(os.path.join(out, "prm", "metrics.json"), os.path.join(out, "prm", f"metrics_t{eval_t}.json"))
        result["evaluation"][str(eval_t)] = metrics["verifiers_by_difficulty"]
    setup, task, held_out, per_bin = held_out_setup(out, seed, GRID_T)
    torch.manual_seed(seed)  # groups.py's draw 0
    with torch.no_grad(), autocast(torch.device("cpu")):
        outcomes = estimates(setup, task, held_out, per_bin)["mean"]
    result["held_out"] = {k: sum(v) / len(v) for k, v in outcomes.items()}
    result["outcomes"] = outcomes  # per problem, for paired intervals between runs
    result["rows"] = {}
    for a, na, b, nb in ROWS:
        diff = paired_difference(outcomes[f"{a}@{na}"], outcomes[f"{b}@{nb}"])
        result["rows"][f"{a}@{na} - {b}@{nb}"] = diff
        print(f"seed {seed}, trained at {t}: {a}@{na} - {b}@{nb} {diff[0]:+.3f} ({diff[1]:+.3f}, {diff[2]:+.3f})")
    for eval_t, table in result["evaluation"].items():
        print(f"seed {seed}, trained at {t}, evaluated at {eval_t}: step AUROC PRM / confidence, ORM outcome AUROC: " + "  ".join(
            f"d{b}: {r['step_auroc_prm']:.3f}/{r['step_auroc_confidence']:.3f}/{r['outcome_auroc_orm']:.3f}" for b, r in table.items()))
    os.makedirs(os.path.join(os.path.dirname(__file__), "runs"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "runs", f"train_temperature_seed{seed}_{t}.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
