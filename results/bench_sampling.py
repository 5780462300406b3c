"""What the two sampling shortcuts of 30e0e62 buy, on a trained tiny policy (one CPU thread).

    OMP_NUM_THREADS=1 python results/bench_sampling.py out/tiny

1. model.generate's drop_finished: whole chains (a batch of 1024 for each of d = 1, 3, 5: 4 test
   problems, 256 samples each, temperature 0.7, until end-of-text), with and without dropping finished chains
   from the batch once half of it has stopped. Without it, a chain that is done keeps decoding
   padding until the longest one in its batch ends.
2. search.next_steps's to_end: search.py's pool (16 test problems of d = 3, 64 samples each) grown
   one step per generate call (a prefill of the whole prefix every step) or each chain to its end
   in one call, cut into the same steps afterwards.
Each timing is the faster of two repeats; the same seed for both arms (the samples differ once
the batch shrinks, their distribution does not).
"""
import os
import sys
import time
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch  # noqa: E402

import search  # noqa: E402
from common import read_split  # noqa: E402
from data.task import EOT, PAD, prompt_text  # noqa: E402
from data.tokenizer import encode, special_id  # noqa: E402
from model import generate, load_checkpoint, model_from_checkpoint  # noqa: E402


def best_of_two(fn):
    times = []
    for _ in range(2):
        torch.manual_seed(0)
        start = time.time()
        result = fn()
        times.append(time.time() - start)
    return min(times), result


@torch.no_grad()
def main(out):
    torch.set_num_threads(1)
    policy = model_from_checkpoint(load_checkpoint(os.path.join(out, "sft", "ckpt.pt"))).eval()
    test = read_split(out, "test")
    groups = [[encode(prompt_text(r["problem"])) for r in [r for r in test if r["difficulty"] == d][:4] for _ in range(256)]
              for d in (1, 3, 5)]
    print("1. whole chains: one batch of 1024 for each of d = 1, 3, 5, temperature 0.7")
    for drop in (False, True):
        seconds, tokens = best_of_two(lambda: sum(len(t) for chains in groups for t in generate(
            policy, chains, policy.cfg.block_size, special_id(PAD), stop_ids=(special_id(EOT),), temperature=0.7,
            drop_finished=drop)[0]))
        print(f"   drop_finished={drop!s:5}: {seconds:5.1f} s, {tokens} tokens")
    roots = [encode(prompt_text(r["problem"])) for r in [r for r in test if r["difficulty"] == 3][:16]]
    step = partial(search.next_steps, policy, temperature=0.7)
    print("2. search.py's pool: 16 problems of d = 3 x 64 samples")
    for to_end in (False, True):
        def pool():
            nodes = [search.new_root(p) for p in roots]
            leaves = search.complete([n for n in nodes for _ in range(64)], partial(step, to_end=to_end) if to_end else step)
            return sum(len(search.path(leaf)) for leaf in leaves) / len(leaves), sum(n.compute.generated_tokens for n in nodes)
        seconds, (steps, tokens) = best_of_two(pool)
        print(f"   to_end={to_end!s:5}: {seconds:5.1f} s, {tokens} tokens, {steps:.1f} steps a chain")


if __name__ == "__main__":
    main(sys.argv[1])
