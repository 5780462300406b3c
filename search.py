"""Test-time compute: answer problems with the trained policy.

o1 thinks before it answers: it writes a hidden chain of thought, then the answer. This script
does the same with the SFT policy. So far it has one method, greedy decoding (one chain of
thought, the likeliest token each time); majority vote, best-of-N, beam search and MCTS build
on the same generation call in later versions.

    python search.py --preset tiny --out out/tiny                         # greedy on every test bin
    python search.py --preset tiny --out out/tiny --problems my.txt --show

--problems FILE: one problem per line in the plain-text form (README), `#` starts a comment.
Prints one answer per line with the number of tokens it thought for; --show prints the chain
of thought too. A line that cannot be read gets one error line on stderr, `-` as its answer,
and exit code 1 at the end; the other lines are still answered.
"""
import os
import sys

import torch

from common import (accuracy_table, autocast, evaluate_policy, parse, read_split, read_task, run_cli,
                    setup_device, stage_parser, write_json)
from data.task import EOT, PAD, STEP, ProblemError, parse_problem, prompt_text
from data.tokenizer import decode, encode, special_id
from data.verify import verify
from model import generate, load_checkpoint, model_from_checkpoint


def answer_file(model, path, task, show):
    """Greedy answers for the problems in a file; returns how many lines could not be read."""
    failed = 0
    with open(path) as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip() and not line.lstrip().startswith("#")]
    for n, line in lines:
        try:
            problem = parse_problem(line, task.p)
            tokens, _ = generate(model, [encode(prompt_text(line))], model.cfg.block_size, special_id(PAD),
                                 stop_ids=(special_id(EOT),))
        except (ProblemError, ValueError) as e:  # ValueError: a problem too long for the model's context
            print(f"{path}:{n}: {e}", file=sys.stderr)
            print("-")
            failed += 1
            continue
        text = decode(tokens[0])
        v = verify(problem, text, task.p)
        print(f"{v.answer if v.answer is not None else 'none'}\t({len(tokens[0])} tokens of thought)")
        if show:
            for i, step in enumerate(text.replace(EOT, "").split(STEP)):
                mark = ("ok " if v.step_correct[i] else "bad") if i < len(v.step_correct) else "   "
                print(f"    {mark} {step}")
    return failed


def main(argv=None):
    parser = stage_parser(__doc__)
    parser.add_argument("--method", default="greedy", choices=["greedy"], help="search method (default: greedy)")
    parser.add_argument("--policy", default="sft", choices=["sft"], help="which trained policy answers")
    parser.add_argument("--problems", metavar="FILE", help="answer the problems in FILE instead of the test bins")
    parser.add_argument("--show", action="store_true", help="print each chain of thought, steps marked by the verifier")
    args = parse(parser, argv)
    task, d = read_task(args.out), setup_device(args.device)
    model = model_from_checkpoint(load_checkpoint(os.path.join(args.out, args.policy, "ckpt.pt")), args.attn)
    model = model.to(d.device).eval()
    if args.problems:
        if not os.path.exists(args.problems):
            sys.exit(f"error: no file {args.problems}")
        with torch.no_grad(), autocast(d.device):
            failed = answer_file(model, args.problems, task, args.show)
        if failed:
            sys.exit(1)
        return
    result = evaluate_policy(model, read_split(args.out, "test"), task, d.device, desc="greedy")
    rows = [{"method": "greedy", "budget": 1, "difficulty": int(k), "accuracy": acc,
             "generated_tokens": result["generated_tokens_by_difficulty"][k]} for k, acc in result["accuracy_by_difficulty"].items()]
    write_json(os.path.join(args.out, "search", "scaling.json"), rows)
    print(accuracy_table(result, task.max_train_d))


if __name__ == "__main__":
    run_cli(main)
