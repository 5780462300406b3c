"""A small GPT: the policy, the reward models and the value model are all this one network.

Decoder-only transformer in the modern small-model style (nanoGPT, with rotary positions and
RMSNorm): token embedding, plus those of the 3 tokens before it -> n_layer x [RMSNorm -> Canon
-> causal self-attention -> RMSNorm -> Canon -> MLP] -> RMSNorm -> two heads. A Canon layer is a
causal convolution over the last 4 positions (Physics of Language Models part 4.1): the cheap
local mixing that lets a 2-layer model chain its lookups. The language-model head is tied to the
token embedding; the scalar head (one linear layer) serves the process and outcome reward models
and the PPO critic.

Also here: batched generation with a KV cache (what every later stage calls to sample), and
checkpoint reading and writing. The attention backends (math, sdpa, and the flash attention of
kernels.cu) are in attention.py.
"""
import math
import os
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

from attention import attention, resolve_attention
from data.task import PAD
from data.tokenizer import fingerprint, get_tokenizer, special_id


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 256   # the longest sequence (prompt + solution) the model reads
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    rope_base: float = 10000.0


# ----------------------------------------------------------------------------- rotary positions

def rope_tables(head_dim, length, base):
    """cos and sin of position * theta_i, theta_i = base^(-2i/d) (Su et al. 2021, eq. 34)."""
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), theta)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate each pair (x1_i, x2_i) of x (..., B, H, T, D) by its position's angle; cos, sin: (B, 1, T, D/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


# ----------------------------------------------------------------------------- the network

SHIFT = 3  # previous tokens whose embeddings each position's input adds (GPT.shift_wte)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, so each new token costs one
    position of work instead of a forward pass over the whole sequence."""

    def __init__(self, n_layer, max_len):
        self.k, self.v = [None] * n_layer, [None] * n_layer
        self.max_len, self.length = max_len, 0
        self.last = None  # (B, SHIFT): the last tokens seen, the previous tokens of the next one
        self.conv = {}  # (layer, site) -> (B, SHIFT, C): the last inputs of each Canon convolution

    def append(self, layer, k, v):
        """Store k, v (B, H, T, D) after the cached positions; return all keys and values so far."""
        if self.k[layer] is None:
            B, H, _, D = k.shape
            self.k[layer] = k.new_zeros(B, H, self.max_len, D)
            self.v[layer] = v.new_zeros(B, H, self.max_len, D)
        end = self.length + k.size(2)
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def keep(self, rows):
        """Keep only these batch rows (an index tensor): the sequences still being generated."""
        self.k = [k[rows] for k in self.k]
        self.v = [v[rows] for v in self.v]
        self.last, self.conv = self.last[rows], {site: c[rows] for site, c in self.conv.items()}


class Canon(nn.Module):
    """x_t + sum_j w_j o x_{t-j}, j = 0..SHIFT: a causal depthwise convolution over the last 4
    positions, added to its input (the Canon layers of Physics of Language Models part 4.1). It
    hands each position what its neighbours computed in the layer below, so that one attention
    layer can look up a key that sits a few tokens away from the value it must fetch. On the
    tiny run (results/sft_tiny_ablation.md): greedy accuracy on d <= 2 from 0.71 to 0.97."""

    def __init__(self, n_embd):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(SHIFT + 1, n_embd))  # zero: starts as the identity

    def forward(self, x, keep, kv_cache, site):
        """x (B, T, C); keep (B, T): False at padding, which must not leak into the next position."""
        B, T, C = x.shape
        x = x * keep[..., None]
        before = x.new_zeros(B, SHIFT, C)
        if kv_cache is not None and site in kv_cache.conv:
            before = kv_cache.conv[site]
        history = torch.cat([before, x], 1)  # (B, SHIFT + T, C)
        if kv_cache is not None:
            kv_cache.conv[site] = history[:, -SHIFT:]
        y = x
        for j in range(SHIFT + 1):  # the input j positions back
            y = y + self.weight[j] * history[:, SHIFT - j:SHIFT - j + T]
        return y


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, backend, mask, kv_cache, layer):
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D)
        (q, k), v = apply_rope(qkv[:2], cos, sin), qkv[2]  # q and k rotated in one call
        if kv_cache is not None:
            k, v = kv_cache.append(layer, k, v)
        y = attention(q, k, v, backend, mask)  # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(cfg.n_embd), nn.RMSNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.canon_attn, self.canon_mlp = Canon(cfg.n_embd), Canon(cfg.n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False))

    def forward(self, x, cos, sin, backend, mask, kv_cache, layer, keep):
        h = self.canon_attn(self.norm1(x), keep, kv_cache, (layer, "attn"))
        x = x + self.attn(h, cos, sin, backend, mask, kv_cache, layer)
        h = self.canon_mlp(self.norm2(x), keep, kv_cache, (layer, "mlp"))
        return x + self.mlp(h)


class GPT(nn.Module):
    def __init__(self, cfg, attn="sdpa"):
        super().__init__()
        if cfg.n_embd % cfg.n_head or (cfg.n_embd // cfg.n_head) % 2:
            raise ValueError("n_embd must split into n_head heads of even size")
        self.cfg, self.attn = cfg, resolve_attention(attn)
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        # the embeddings of the SHIFT previous tokens, added to each position's input: a causal
        # convolution of width 4 over the tokens, like the "Canon layers" of Physics of Language
        # Models part 4.1. Each position of `a = 7` then knows the tokens before it, so finding
        # what follows `a =` in the shuffled problem takes one attention layer, not a chain of
        # them. Padding (no token there) adds zero. On the tiny run: greedy accuracy on d <= 2
        # from 0.14-0.27 with one previous token to 0.71-0.80 with three (two seeds each).
        self.pad_id = special_id(PAD)
        self.shift_wte = nn.ModuleList(nn.Embedding(cfg.vocab_size, cfg.n_embd, padding_idx=self.pad_id)
                                       for _ in range(SHIFT))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.n_embd)
        self.scalar_head = nn.Linear(cfg.n_embd, 1)  # reward models and the critic read this
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        for block in self.blocks:  # residual projections scaled down with depth (GPT-2)
            nn.init.normal_(block.attn.proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
            nn.init.normal_(block.mlp[2].weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
        nn.init.zeros_(self.scalar_head.weight)
        nn.init.zeros_(self.scalar_head.bias)
        with torch.no_grad():
            for emb in self.shift_wte:
                emb.weight[self.pad_id].zero_()

    def flop_params(self):
        """The parameters that multiply on every token, N in the compute estimate 6N per trained token
        (Kaplan et al. 2020): all but the embeddings of the tokens before, which are only looked up.
        The token embedding counts, as it is the tied output layer too."""
        return sum(p.numel() for p in self.parameters()) - sum(e.weight.numel() for e in self.shift_wte)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx, head="lm", positions=None, mask=None, kv_cache=None):
        """idx (B, T) token ids -> logits (B, T, vocab) for head="lm", scores (B, T) for
        head="scalar", or both, (logits, scores), for head="both" (a reward model that keeps its
        policy's next-token loss, train_prm.py). positions (B, T) default to 0..T-1, after what a
        kv_cache holds (generate passes them: its left padding takes no positions); mask and
        kv_cache are for generation."""
        B, T = idx.shape
        if positions is None:
            start = kv_cache.length if kv_cache is not None else 0
            if start + T > self.cfg.block_size:
                raise ValueError(f"a sequence of {start + T} tokens is longer than the model's block_size {self.cfg.block_size}")
            positions = torch.arange(start, start + T, device=idx.device).expand(B, T)
        cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)  # (B, 1, T, D/2)
        before = torch.full_like(idx[:, :1], self.pad_id).expand(B, SHIFT)  # the tokens before idx: none,
        if kv_cache is not None and kv_cache.last is not None:                # or the ones the cache has seen
            before = kv_cache.last
        history = torch.cat([before, idx], 1)  # (B, SHIFT + T)
        x = self.wte(idx)  # (B, T, C)
        for j, emb in enumerate(self.shift_wte, start=1):  # the token j positions back
            x = x + emb(history[:, SHIFT - j:SHIFT - j + T])
        keep = idx != self.pad_id  # (B, T): the Canon layers must not pass padding on
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, self.attn, mask, kv_cache, layer, keep)
        if kv_cache is not None:
            kv_cache.length += T
            kv_cache.last = history[:, -SHIFT:]
        x = self.norm(x)
        if head == "scalar":
            return self.scalar_head(x).squeeze(-1)
        logits = x @ self.wte.weight.t()  # tied: the output layer is the embedding (Press & Wolf 2017)
        return (logits, self.scalar_head(x).squeeze(-1)) if head == "both" else logits


# ----------------------------------------------------------------------------- generation

def length_batches(sequences, max_batch):
    """Indices in chunks of at most max_batch, sorted by length: similar lengths pad little."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    return [order[i:i + max_batch] for i in range(0, len(order), max_batch)]


def sample_next(logits, temperature, top_k, generator=None):
    """One token per row from logits (B, V), and its log-probability under softmax(logits / T).
    temperature 0 is greedy. top_k, if set, samples among the k likeliest tokens only."""
    logits = logits.float()
    if temperature == 0:
        token = logits.argmax(-1)
        return token, torch.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1)
    logits = logits / temperature
    logprobs = torch.log_softmax(logits, -1)
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    token = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
    return token, logprobs.gather(-1, token[:, None]).squeeze(-1)


@torch.inference_mode()  # like no_grad, and lighter per operation: nothing here is ever differentiated
def generate(model, prompts, max_new_tokens, pad_id, stop_ids=(), temperature=0.0, top_k=None, generator=None,
             drop_finished=True):
    """Continue each prompt (a list of token ids) until it emits a token of stop_ids or has
    max_new_tokens new tokens, or fills the model's block_size. Prompts are left-padded into one
    batch and decoded together with a KV cache. Returns, per prompt, the new tokens (the stop token
    included) and their log-probabilities (see sample_next). drop_finished: once half the batch has
    stopped, the rest go on in a smaller batch (results/bench_sampling.py: whole chains about 2x faster)."""
    B, device = len(prompts), model.wte.weight.device
    T0 = max(len(p) for p in prompts)
    # each prompt's own room: a short prompt batched with a long one may still fill the block
    rooms = [min(max_new_tokens, model.cfg.block_size - len(p)) for p in prompts]
    if min(rooms) <= 0:
        raise ValueError(f"a prompt of {T0} tokens leaves no room in block_size {model.cfg.block_size}")
    room, max_new_tokens = torch.tensor(rooms, device=device), max(rooms)
    idx = torch.full((B, T0), pad_id, dtype=torch.long, device=device)
    real = torch.zeros(B, T0 + max_new_tokens, dtype=torch.bool, device=device)  # which cache slots hold real tokens
    for i, p in enumerate(prompts):
        idx[i, T0 - len(p):] = torch.tensor(p, dtype=torch.long)
        real[i, T0 - len(p):] = True
    lengths = real[:, :T0].sum(1)  # (B,)
    padded = bool((lengths < T0).any())  # without padding the decode steps need no mask at all
    positions = (real[:, :T0].cumsum(1) - 1).clamp(min=0)  # rotary positions count real tokens only
    # prefill: causal, and no attention to padding (a padding query sees itself, so no row is empty)
    causal = torch.ones(T0, T0, dtype=torch.bool, device=device).tril()
    mask = causal & (real[:, None, None, :T0] | torch.eye(T0, dtype=torch.bool, device=device))
    cache = KVCache(model.cfg.n_layer, T0 + max_new_tokens)
    logits = model(idx, positions=positions, mask=mask, kv_cache=cache)[:, -1]
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)  # the prompts still in the batch, which drops finished ones
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, device=device)
    for t in range(max_new_tokens):
        token, logprob = sample_next(logits, temperature, top_k, generator)
        token = token.masked_fill(done, pad_id)
        tokens[rows, t], logprobs[rows, t] = token, logprob
        done |= torch.isin(token, stop) | (t + 1 >= room)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        if drop_finished and 2 * int(done.sum()) >= len(done):  # half the batch has stopped: decode the rest only
            keep = (~done).nonzero().squeeze(1)
            rows, done, real, lengths, token, room = rows[keep], done[keep], real[keep], lengths[keep], token[keep], room[keep]
            cache.keep(keep)
        mask = real[:, None, None, :T0 + t + 1] if padded else None  # a new token sees every real one
        position = (lengths + t).clamp(max=model.cfg.block_size - 1)  # a row at its room's end is done: any position
        logits = model(token[:, None], positions=position[:, None], mask=mask, kv_cache=cache)[:, -1]
    tokens, logprobs = tokens[:, :t + 1].tolist(), logprobs[:, :t + 1].tolist()
    out_tokens, out_logprobs = [], []
    for row, lp, limit in zip(tokens, logprobs, rooms):
        n = next((i + 1 for i, tok in enumerate(row[:limit]) if tok in stop_ids), min(limit, len(row)))
        out_tokens.append(row[:n])
        out_logprobs.append(lp[:n])
    return out_tokens, out_logprobs


# ----------------------------------------------------------------------------- checkpoints

class CheckpointError(ValueError):
    """A checkpoint that is missing or does not fit this code; the message says what to do."""


def save_checkpoint(path, model, **state):
    """Write atomically: to a temporary file, then rename, so a kill never leaves half a file.
    state: anything else to keep (step, optimizer, rng, ...): tensors, numbers, strings, dicts."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    raw = model.module if hasattr(model, "module") else model  # unwrap DDP
    raw = getattr(raw, "_orig_mod", raw)  # unwrap torch.compile
    ckpt = dict(state, model=raw.state_dict(), config=asdict(raw.cfg), tokenizer=fingerprint(get_tokenizer()))
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, expect_config=None):
    """Read a checkpoint (never executing code from it) and check that it fits this code."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}: run the stage that writes it first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, not a traceback
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this project")
    ours = fingerprint(get_tokenizer())
    if ckpt.get("tokenizer") != ours:
        raise CheckpointError(f"{path} was made with tokenizer {ckpt.get('tokenizer')}, this code uses {ours}: retrain it")
    names = {f.name for f in fields(GPTConfig)}
    if set(ckpt["config"]) != names:
        raise CheckpointError(f"{path} has a model config with fields {sorted(ckpt['config'])}, this code expects {sorted(names)}")
    cfg = GPTConfig(**ckpt["config"])
    if cfg.vocab_size != get_tokenizer().n_vocab:
        raise CheckpointError(f"{path} has vocab_size {cfg.vocab_size}, the tokenizer has {get_tokenizer().n_vocab}")
    with torch.device("meta"):  # the weights this code's model has, without allocating them
        ours = {k: tuple(v.shape) for k, v in GPT(cfg).state_dict().items()}
    if {k: tuple(v.shape) for k, v in ckpt["model"].items()} != ours:
        raise CheckpointError(f"{path} holds the weights of another version of model.py: retrain it")
    if expect_config is not None and cfg != expect_config:
        diff = ", ".join(f"{k}={v} (want {getattr(expect_config, k)})" for k, v in asdict(cfg).items() if getattr(expect_config, k) != v)
        raise CheckpointError(f"{path} has an incompatible model config: {diff}")
    ckpt["config"] = cfg
    return ckpt


def model_from_checkpoint(ckpt, attn="sdpa"):
    model = GPT(ckpt["config"], attn=attn)
    model.load_state_dict(ckpt["model"])
    return model
