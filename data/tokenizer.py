"""The tokenizer: a tiktoken Encoding built offline from the task itself.

`tiktoken.get_encoding("gpt2")` downloads its merge table; this project builds its own
instead: the 256 single bytes, then a few byte-pair merges learned on a fixed sample of task
text (the BPE algorithm in `train_merges`, ten lines), then four special tokens. The split
pattern puts every digit in a piece of its own, so no merge ever joins digits: the model
sees `12` as `1`, `2` and must learn arithmetic digit by digit.
"""
import functools
import hashlib
import random
from collections import Counter

import tiktoken

from data.task import BACK, EOT, PAD, STEP, TaskConfig, generate_problem, prompt_text, solution_text

NAME = "o1mod"
N_MERGES = 64  # an upper bound: the sample runs out of pairs to merge after 16
# a digit alone | a word | punctuation with the spaces around it | other spaces. A variable is
# then the same token wherever it stands (`d` in `d = a * c` and in `e = d - 3`).
PATTERN = r"[0-9]|[A-Za-z]+| ?[^\sA-Za-z0-9]+ ?|\s+"
SPECIALS = (EOT, STEP, BACK, PAD)


def _pieces(text):
    import regex  # tiktoken depends on it
    return regex.findall(PATTERN, text)


def train_merges(corpus, n_merges):
    """Byte-pair encoding: repeatedly merge the most frequent adjacent pair (ties: smallest bytes)."""
    words = Counter(tuple(bytes([b]) for b in piece.encode()) for piece in _pieces(corpus))
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best[0] + best[1])
        new_words = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return merges


def _corpus():
    """A fixed sample of task text: the same bytes on every machine, so the same merges."""
    rng, cfg, parts = random.Random("tokenizer"), TaskConfig(), []
    for i in range(200):
        problem = generate_problem(rng, 1 + i % cfg.max_eval_d, cfg)
        parts.append(prompt_text(problem.text()) + solution_text(problem, cfg.p).replace(STEP, "\n").replace(EOT, "\n"))
    return "".join(parts)


@functools.lru_cache(maxsize=1)
def get_tokenizer():
    ranks = {bytes([b]): b for b in range(256)}
    for merge in train_merges(_corpus(), N_MERGES):
        ranks[merge] = len(ranks)
    specials = {s: len(ranks) + i for i, s in enumerate(SPECIALS)}
    return tiktoken.Encoding(NAME, pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=specials)


def fingerprint(enc):
    """Identifies the exact vocabulary; checkpoints store it and refuse any other."""
    h = hashlib.sha256(enc._pat_str.encode())
    for token in sorted(enc._mergeable_ranks, key=enc._mergeable_ranks.get):
        h.update(token + b"\0")
    for s, i in sorted(enc._special_tokens.items()):
        h.update(f"{s}={i}".encode())
    return f"{enc.name}:{h.hexdigest()[:16]}"


def encode(text):
    return get_tokenizer().encode(text, allowed_special="all")


def decode(ids):
    return get_tokenizer().decode(list(ids))


def special_id(token):
    return get_tokenizer()._special_tokens[token]
