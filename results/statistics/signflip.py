"""Does the paired bootstrap call a difference shown that an exact test would not?

The verdict rows rest on the 95% percentile bootstrap of A - B over problems (common.paired_difference).
With few problems where A and B differ, that interval is too narrow: A right and B wrong on 4 of
100 problems, the rest tied, gives (+0.010, +0.080), "shown", where an exact sign test says a fair
coin does that one time in eight (p = 0.125). This script recomputes every verdict row of run
directories with a sign-flip permutation test beside it (under "no difference" each problem's A - B
is as likely negative as positive; for 0/1 outcomes it is the exact McNemar test) and prints how
many problems each row rests on, so a reader can see whether any verdict is of that kind.

    python results/statistics/signflip.py results/tiny_cpu results/tiny_cpu_seed1 results/seeds/tiny_seed2 results/seeds/tiny_seed3
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import report  # noqa: E402


def sign_flip_p(differences, flips=200_000, seed=0):
    """Two-sided p-value of sum(differences) under random signs, from `flips` draws."""
    d = np.asarray([x for x in differences if x != 0], dtype=float)
    if not len(d):
        return 1.0
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(flips, len(d)))
    return float((np.abs(signs @ np.abs(d)) >= abs(d.sum()) - 1e-9).mean())


def rows(out, max_train_d=3):
    """(phenomenon, A, verdict, problems that differ, A - B, interval, sign-flip p) of each claim."""
    seen = []
    original = report.claim

    def spy(name, label_a, a, label_b, b, note="", holds=False):
        c = original(name, label_a, a, label_b, b, note, holds)
        if "difference" in c:
            ids = sorted(set(a) & set(b))
            d = [a[i] - b[i] for i in ids]
            seen.append((name, label_a, c["verdict"], sum(x != 0 for x in d), c["difference"], c["interval"], sign_flip_p(d)))
        return c

    report.claim = spy
    try:
        report.judge(out, max_train_d)
    finally:
        report.claim = original
    return seen


if __name__ == "__main__":
    for out in sys.argv[1:]:
        print(f"\n{out}\n| phenomenon | A | verdict | problems that differ | A - B (95% interval) | sign-flip p | agree |\n|---|---|---|---:|---|---:|---|")
        for name, a, verdict, n, diff, (lo, hi), p in rows(out):
            agree = (verdict == "within noise") == (p >= 0.05)
            print(f"| {name} | {a} | {verdict} | {n} | {diff:+.3f} ({lo:+.3f}, {hi:+.3f}) | {p:.4f} | {'yes' if agree else '**no**'} |")
