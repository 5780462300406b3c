"""Write the task's splits: python data/prepare.py --preset tiny --out out/tiny

DIR/data/train.jsonl   problems of difficulty 1..max_train_d, with their chains of thought
DIR/data/val.jsonl     the same range, for picking checkpoints (later stages)
DIR/data/test.jsonl    n_test_per_bin problems for every difficulty 1..max_eval_d: the bins
                       beyond max_train_d are the out-of-distribution range
DIR/data/meta.json     the task config, the tokenizer, the counts

A problem's split is fixed by a hash of the problem (data/task.py: split_of), so no test
problem is ever trained on, whatever the seed or the sizes.
"""
import json
import os
import random
import sys
import time

from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from common import PRESETS, parse, run_cli, stage_parser, write_json  # noqa: E402
from data.task import prompt_text, sample_split, solution_text, difficulty  # noqa: E402
from data.tokenizer import encode, fingerprint, get_tokenizer  # noqa: E402


def records(problems, p, rng=None, self_correct=0.0, desc=None):
    return [{"problem": pr.text(), "difficulty": difficulty(pr), "solution": solution_text(pr, p, rng, self_correct)}
            for pr in tqdm(problems, desc=desc, disable=desc is None, leave=False)]


def write_jsonl(path, rows):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)


def main(argv=None):
    parser = stage_parser(__doc__)
    parser.add_argument("--self-correct", type=float, default=0.0, metavar="RATE",
                        help="write each training step wrong first, then <|back|> and the right step, "
                             "with this probability (default 0: off)")
    args = parse(parser, argv)
    if not 0 <= args.self_correct <= 1:
        parser.error(f"--self-correct {args.self_correct}: a probability, give a number from 0 to 1")
    preset, t0 = PRESETS[args.preset], time.time()
    task = preset.task
    train_range = list(range(1, task.max_train_d + 1))
    splits = {
        "train": records(sample_split("train", preset.n_train, train_range, task, args.seed, "prepare: train problems"), task.p,
                         random.Random(args.seed), args.self_correct, "prepare: their solutions"),
        "val": records(sample_split("val", preset.n_val, train_range, task, args.seed), task.p),
        "test": [r for d in range(1, task.max_eval_d + 1)
                 for r in records(sample_split("test", preset.n_test_per_bin, [d], task, args.seed), task.p)],
    }
    longest = max(len(encode(prompt_text(r["problem"]) + r["solution"])) for rows in splits.values() for r in rows)
    if longest > preset.block_size:
        sys.exit(f"error: preset {args.preset}: a problem of {longest} tokens does not fit block_size {preset.block_size}")
    os.makedirs(os.path.join(args.out, "data"), exist_ok=True)
    for name, rows in splits.items():
        write_jsonl(os.path.join(args.out, "data", f"{name}.jsonl"), rows)
    write_json(os.path.join(args.out, "data", "meta.json"), {
        "preset": args.preset, "task": task.__dict__, "tokenizer": fingerprint(get_tokenizer()),
        "seed": args.seed, "self_correct": args.self_correct, "longest_tokens": longest,
        "counts": {name: len(rows) for name, rows in splits.items()},
    })
    counts = ", ".join(f"{len(rows)} {name}" for name, rows in splits.items())
    print(f"prepare: {counts} problems in {args.out}/data ({time.time() - t0:.1f}s, longest {longest} tokens)")


if __name__ == "__main__":
    run_cli(main)
