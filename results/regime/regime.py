"""The task-regime experiment behind results/regime/README.md: one SFT run of the tiny model on a
variant of the tiny preset's task, then its greedy accuracy, majority vote and pass@16 per
difficulty bin (search.py's grid, 100 problems per bin). A finished SFT is not run again.

    OMP_NUM_THREADS=1 python results/regime/regime.py NAME n_assign=7 max_train_d=4 block_size=160 sft.steps=2400

A setting is a task field (n_assign), a preset field (block_size) or a section's (sft.steps).

Writes out/regime/NAME/ (data, sft) and out/regime/NAME/regime.json.
"""
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import common  # noqa: E402
from data import prepare  # noqa: E402
import search  # noqa: E402
import train_sft  # noqa: E402

TASK_KEYS = {f.name for f in dataclasses.fields(common.TaskConfig)}


def main():
    name, pairs = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
    values = {k: (float(v) if "." in v else int(v)) for k, v in pairs.items()}
    base = common.PRESETS["tiny"]
    task = dataclasses.replace(base.task, **{k: v for k, v in values.items() if k in TASK_KEYS})
    if "max_eval_d" not in values:
        task = dataclasses.replace(task, max_eval_d=min(task.n_assign - 1, task.max_train_d + 2))
    sections = {k: dataclasses.replace(getattr(base, k), **{f.split(".")[1]: v for f, v in values.items() if f.startswith(k + ".")})
                for k in {f.split(".")[0] for f in values if "." in f}}
    preset = dataclasses.replace(base, task=task, **sections,
                                 **{k: v for k, v in values.items() if k not in TASK_KEYS and "." not in k})
    common.PRESETS[name] = preset
    out = os.path.join("out", "regime", name)
    t0 = time.time()
    if not os.path.exists(os.path.join(out, "sft", "metrics.json")):
        prepare.main(["--preset", name, "--out", out])
        train_sft.main(["--preset", name, "--out", out])
    sft_s = time.time() - t0
    with open(os.path.join(out, "sft", "metrics.json")) as f:
        metrics = json.load(f)
    search.main(["--preset", name, "--out", out, "--method", "majority", "--budget", "16", "--per-bin", "100"])
    with open(os.path.join(out, "search", "scaling.json")) as f:
        grid = json.load(f)
    at = {(r["method"], str(r["difficulty"])): round(r["accuracy"], 3) for r in grid}
    bins = metrics["accuracy_by_difficulty"]
    summary = {"name": name, "settings": values, "task": task.__dict__, "sft_wall_s": metrics["wall_time_s"],
               "train_tokens": metrics["train_tokens"], "params": metrics["params"],
               "greedy": {d: round(a, 3) for d, a in bins.items()},
               "greedy_interval": metrics.get("interval_by_difficulty"),
               "greedy_100": {d: at.get(("greedy", d)) for d in bins},
               "majority@16": {d: at.get(("majority", d)) for d in bins},
               "pass@16": {d: at.get(("pass@n", d)) for d in bins}, "search_wall_s": time.time() - t0 - sft_s}
    common.write_json(os.path.join(out, "regime.json"), summary)
    print(json.dumps({k: summary[k] for k in ("name", "sft_wall_s", "greedy", "pass@16")}))


if __name__ == "__main__":
    main()
