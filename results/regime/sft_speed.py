"""SFT steps per second of the tiny model on the regime data, eager or torch.compile'd, behind the
speed table of results/regime/README.md. Needs out/regime/a6d3/data (results/regime/regime.py).

    OMP_NUM_THREADS=1 python results/regime/sft_speed.py eager 96
    OMP_NUM_THREADS=2 python results/regime/sft_speed.py compile 96
"""
import dataclasses
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common import PRESETS, encode_examples, make_batch, make_optimizer, read_split  # noqa: E402
from model import GPT  # noqa: E402

mode, width = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 96
preset = dataclasses.replace(PRESETS["tiny"], n_embd=width, n_head=width // 24)
train = encode_examples(read_split("out/regime/a6d3", "train")[:5000])
torch.manual_seed(0)
model = GPT(preset.model_config(), attn="sdpa")
model.scalar_head.requires_grad_(False)
optimizer = make_optimizer(model, 3e-3, 0.02)
forward = torch.compile(model, dynamic=True) if mode == "compile" else model
generator = torch.Generator().manual_seed(0)


def step():
    x, y = make_batch([train[i] for i in torch.randint(len(train), (64,), generator=generator).tolist()], "cpu")
    F.cross_entropy(forward(x).float().flatten(0, 1), y.flatten(), ignore_index=-1).backward()
    optimizer.step()
    optimizer.zero_grad()


t = time.time()
for _ in range(5):
    step()
print(f"{mode}: 5 warm-up steps (compilation included) in {time.time() - t:.1f}s")
t = time.time()
for _ in range(40):
    step()
print(f"{mode}, width {width}, {torch.get_num_threads()} threads: {40 / (time.time() - t):.2f} steps/s")
