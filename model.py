"""A small GPT: the policy, the reward models and the value model are all this one network.

Decoder-only transformer in the modern small-model style (nanoGPT, with rotary positions and
RMSNorm): token embedding, plus those of the 3 tokens before it -> n_layer x [RMSNorm -> Canon
-> causal self-attention -> RMSNorm -> Canon -> MLP] -> RMSNorm -> two heads. A Canon layer is a
causal convolution over the last 4 positions (Physics of Language Models part 4.1): the cheap
local mixing that lets a 2-layer model chain its lookups. The language-model head is tied to the
token embedding; the scalar head (one linear layer) serves the process and outcome reward models
and the PPO critic.

Also here, in this order: batched generation with a KV cache (what every later stage calls to
sample), checkpoint reading and writing, and, last, the attention backends behind one switch
(math, sdpa, and the flash attention of kernels.cu with its PyTorch mirror TiledAttention).
"""
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

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

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx, head="lm", positions=None, mask=None, kv_cache=None):
        """idx (B, T) token ids -> logits (B, T, vocab) for head="lm", or scores (B, T) for
        head="scalar". positions (B, T) default to 0..T-1; mask and kv_cache are for generation."""
        B, T = idx.shape
        if positions is None:
            if T > self.cfg.block_size:
                raise ValueError(f"a sequence of {T} tokens is longer than the model's block_size {self.cfg.block_size}")
            positions = torch.arange(T, device=idx.device).expand(B, T)
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
        return x @ self.wte.weight.t()  # tied: the output layer is the embedding (Press & Wolf 2017)


# ----------------------------------------------------------------------------- generation

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
def generate(model, prompts, max_new_tokens, pad_id, stop_ids=(), temperature=0.0, top_k=None, generator=None):
    """Continue each prompt (a list of token ids) until it emits a token of stop_ids or has
    max_new_tokens new tokens. Prompts are left-padded into one batch and decoded together with
    a KV cache. Returns, per prompt, the new tokens (the stop token included) and their
    log-probabilities (see sample_next)."""
    B, device = len(prompts), model.wte.weight.device
    T0 = max(len(p) for p in prompts)
    max_new_tokens = min(max_new_tokens, model.cfg.block_size - T0)
    if max_new_tokens <= 0:
        raise ValueError(f"a prompt of {T0} tokens leaves no room in block_size {model.cfg.block_size}")
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
    tokens, logprobs = [], []
    for t in range(max_new_tokens):
        token, logprob = sample_next(logits, temperature, top_k, generator)
        token = token.masked_fill(done, pad_id)
        tokens.append(token)
        logprobs.append(logprob)
        done |= torch.isin(token, stop)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        mask = real[:, None, None, :T0 + t + 1] if padded else None  # a new token sees every real one
        logits = model(token[:, None], positions=(lengths + t)[:, None], mask=mask, kv_cache=cache)[:, -1]
    tokens, logprobs = torch.stack(tokens, 1).tolist(), torch.stack(logprobs, 1).tolist()
    out_tokens, out_logprobs = [], []
    for row, lp in zip(tokens, logprobs):
        n = next((i + 1 for i, tok in enumerate(row) if tok in stop_ids), len(row))
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


# ----------------------------------------------------------------------------- attention

ATTENTION_BACKENDS = ("math", "sdpa", "cuda")
_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def resolve_attention(name):
    """The backend that will really run. `cuda` (kernels.cu) needs a CUDA build of torch and a GPU
    with bf16 tensor cores (sm_80 or newer); without them it falls back to `sdpa`, with one warning."""
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: choose from {', '.join(ATTENTION_BACKENDS)}")
    if name == "cuda":
        reason = cuda_kernel_unavailable()
        if reason:
            _warn_once("cuda", f"--attn cuda: {reason}; using sdpa")
            return "sdpa"
    return name


def attention(q, k, v, backend, mask=None):
    """softmax(Q K^T / sqrt(d)) V, causal. q: (B, H, Tq, D), k and v: (B, H, Tk, D), the queries
    being the last Tq of the Tk positions (Tq = 1: the new token of a KV-cached step, which sees
    every key). mask: None for plain causal attention, else a bool (B, 1, Tq, Tk), True = may attend."""
    Tq, Tk = q.size(-2), k.size(-2)
    if backend == "cuda":
        reason = _flash_refuses(q, k, v, mask)
        if reason is None:
            return FlashAttentionCUDA.apply(q, k, v)
        _warn_once(f"cuda: {reason}", f"--attn cuda: {reason}; using sdpa there")
        backend = "sdpa"
    if mask is None and 1 < Tq < Tk:  # sdpa's is_causal aligns the first query with the first key
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and Tq > 1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if mask is None:
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


# ----------------------------------------------------------------------------- flash attention
#
# FlashAttention-2 (Dao 2023) computes the same softmax(Q K^T / sqrt(d)) V without ever holding
# the (T, T) score matrix: queries in blocks Q_i, keys and values streamed in blocks K_j, V_j, an
# online softmax in between. TiledAttention is the algorithm in PyTorch, loop for loop what
# kernels.cu does per thread block (tested against `math` on CPU); FlashAttentionCUDA runs kernels.cu.

def _flash_forward(q, k, v, block_q=64, block_k=64):
    """O and the log-sum-exp L (B, H, T) of causal attention, one (block_q, block_k) tile at a time."""
    B, H, T, D = q.shape
    work = torch.float64 if q.dtype == torch.float64 else torch.float32  # kernels.cu: bf16 in, fp32 sums
    scale = 1.0 / math.sqrt(D)  # tau
    o = torch.empty_like(q)
    lse = q.new_empty(B, H, T, dtype=work)
    for i0 in range(0, T, block_q):  # a thread block in kernels.cu
        i1 = min(i0 + block_q, T)
        q_i = q[:, :, i0:i1].to(work)  # (B, H, Br, D)
        rows = torch.arange(i0, i1, device=q.device)
        m = q_i.new_full((B, H, i1 - i0), float("-inf"))  # running row max
        l = q_i.new_zeros(B, H, i1 - i0)  # running row sum of exp(S - m)
        acc = q_i.new_zeros(B, H, i1 - i0, D)  # O~, unnormalised
        for j0 in range(0, i1, block_k):  # causal: tiles wholly above the diagonal (j0 >= i1) are skipped
            k_j, v_j = k[:, :, j0:j0 + block_k].to(work), v[:, :, j0:j0 + block_k].to(work)
            s = scale * q_i @ k_j.transpose(-2, -1)  # S_ij (B, H, Br, Bc)
            if j0 + k_j.size(2) - 1 > i0:  # the tile crosses the diagonal: only here is there a mask
                keys = torch.arange(j0, j0 + k_j.size(2), device=q.device)
                s = s.masked_fill(keys[None, :] > rows[:, None], float("-inf"))
            # online softmax (FlashAttention-2, section 3.1.1): m_new = max(m, rowmax(S_ij)),
            # P~ = exp(S_ij - m_new), l = exp(m - m_new) l + rowsum(P~), O~ = exp(m - m_new) O~ + P~ V_j
            m_new = torch.maximum(m, s.amax(-1))
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m - m_new)
            l = alpha * l + p.sum(-1)
            acc = alpha[..., None] * acc + p @ v_j
            m = m_new
        o[:, :, i0:i1] = (acc / l[..., None]).to(q.dtype)  # O_i = O~ / l
        lse[:, :, i0:i1] = m + torch.log(l)  # L_i = m + log(l), all the backward needs of the softmax
    return o, lse


def _flash_backward(do, q, k, v, o, lse, block_q=64, block_k=64):
    """dQ, dK, dV of causal attention from the saved O and L: P is recomputed tile by tile."""
    B, H, T, D = q.shape
    work, scale = lse.dtype, 1.0 / math.sqrt(D)
    delta = (do.to(work) * o.to(work)).sum(-1)  # D_i = rowsum(dO_i o O_i)  (B, H, T)
    dq, dk, dv = (torch.zeros(B, H, T, D, dtype=work, device=q.device) for _ in range(3))

    def tile(i0, i1, j0, j1):
        """P_ij and dS_ij of one tile, recomputed from the log-sum-exp."""
        q_i, do_i, k_j, v_j = q[:, :, i0:i1].to(work), do[:, :, i0:i1].to(work), k[:, :, j0:j1].to(work), v[:, :, j0:j1].to(work)
        p = torch.exp(scale * q_i @ k_j.transpose(-2, -1) - lse[:, :, i0:i1, None])  # P_ij = exp(S_ij - L_i)
        if j1 - 1 > i0:  # crosses the diagonal
            keys, rows = torch.arange(j0, j1, device=q.device), torch.arange(i0, i1, device=q.device)
            p = p.masked_fill(keys[None, :] > rows[:, None], 0.0)
        dp = do_i @ v_j.transpose(-2, -1)  # dP_ij = dO_i V_j^T
        ds = p * (dp - delta[:, :, i0:i1, None])  # dS_ij = P_ij o (dP_ij - D_i)
        return q_i, do_i, k_j, p, ds

    # pass 1, a thread block per key block j: dV_j = sum_i P_ij^T dO_i, dK_j = tau sum_i dS_ij^T Q_i
    for j0 in range(0, T, block_k):
        j1 = min(j0 + block_k, T)
        for i0 in range(j0 // block_q * block_q, T, block_q):  # causal: query blocks at or below the diagonal
            q_i, do_i, _, p, ds = tile(i0, min(i0 + block_q, T), j0, j1)
            dv[:, :, j0:j1] += p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j1] += scale * ds.transpose(-2, -1) @ q_i
    # pass 2, a thread block per query block i: dQ_i = tau sum_j dS_ij K_j. A separate pass, so that
    # every output row has one writer: deterministic, where adding dQ in pass 1 would need atomics.
    for i0 in range(0, T, block_q):
        i1 = min(i0 + block_q, T)
        for j0 in range(0, i1, block_k):
            _, _, k_j, _, ds = tile(i0, i1, j0, min(j0 + block_k, T))
            dq[:, :, i0:i1] += scale * ds @ k_j
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class TiledAttention(torch.autograd.Function):
    """Causal attention by the FlashAttention-2 algorithm in PyTorch, with its own backward.
    Slow (Python loops over tiles); it is here to be read and tested, kernels.cu to be run."""

    @staticmethod
    def forward(ctx, q, k, v, block_q=64, block_k=64):
        o, lse = _flash_forward(q, k, v, block_q, block_k)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.blocks = (block_q, block_k)
        return o

    @staticmethod
    def backward(ctx, do):
        return (*_flash_backward(do, *ctx.saved_tensors, *ctx.blocks), None, None)


_HERE = os.path.dirname(os.path.abspath(__file__))
_KERNEL_SOURCES = [os.path.join(_HERE, "kernels.cu"), os.path.join(_HERE, "kernels_binding.cpp")]
_extension = None  # kernels.cu built and checked, or a string: why it is not used


def cuda_kernel_unavailable():
    """Why kernels.cu cannot run on this machine at all, or None if it can."""
    if torch.version.cuda is None:
        return "this torch is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if torch.cuda.get_device_capability() < (8, 0):
        return f"{torch.cuda.get_device_name()} has no bf16 tensor cores (kernels.cu needs sm_80 or newer)"
    return None


def _flash_extension(device="cuda"):
    """kernels.cu, built on first use and trusted only once it passes its self-check on `device`;
    or a string: why not, which every later call gets too, so attention() uses sdpa from then on."""
    global _extension
    if _extension is None:
        _extension = _build_kernels()
        if not isinstance(_extension, str):
            _extension = _self_check(FlashAttentionCUDA.apply, device) or _extension
        if isinstance(_extension, str):  # the same key as attention()'s warning: said once
            _warn_once(f"cuda: {_extension}", f"--attn cuda: {_extension}; using sdpa")
    return _extension


def _build_kernels():
    """kernels.cu and its binding compiled by torch.utils.cpp_extension, which caches the build (in
    $TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions) and rebuilds only when a source
    changes; or one line: why it cannot be built."""
    problem = _build_problem()
    if problem:
        return f"kernels.cu cannot be built: {problem}"
    print("model: loading kernels.cu (built by torch.utils.cpp_extension on first use, about 15 s; cached after)",
          file=sys.stderr)
    try:
        from torch.utils.cpp_extension import load
        return load(name="o1_flash_attention", sources=_KERNEL_SOURCES, extra_cuda_cflags=["-O3"])
    except Exception as e:  # a compiler or linker error: the line that says which, not the whole log
        return f"kernels.cu did not build: {_first_error(str(e))[:300]}"


def _build_problem():
    """What stops torch.utils.cpp_extension from building kernels.cu here, and the fix, in one line;
    None if nothing does. Checked before the build, so that a user reads the cause, not a log."""
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        return "ninja is missing (cpp_extension builds with it): pip install ninja"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler {compiler!r}: install g++ (apt install g++) or set CXX to one"
    nvcc = os.path.join(cpp_extension.CUDA_HOME or "", "bin", "nvcc")
    if not cpp_extension.CUDA_HOME or not os.path.exists(nvcc):
        return f"no nvcc: install the CUDA {torch.version.cuda} toolkit and set CUDA_HOME to it (or put its bin/ on the PATH)"
    release = re.search(r"release (\d+)\.(\d+)", subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout)
    ours = torch.version.cuda.split(".")[0]
    if release and release.group(1) != ours:
        return (f"{nvcc} is CUDA {release.group(1)}.{release.group(2)}, this torch is built with CUDA {torch.version.cuda}: "
                f"set CUDA_HOME to a CUDA {ours}.x toolkit, or install a torch built for CUDA {release.group(1)}")
    return None


def _first_error(log):
    """The line of a failed build's log that says what went wrong: the first line the failed command
    printed (ninja writes `FAILED: target`, then the command, then its output), else the last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()] or ["no message"]
    failed = next((i for i, line in enumerate(lines) if line.startswith("FAILED:")), None)
    return lines[failed + 2] if failed is not None and failed + 2 < len(lines) else lines[-1]


def _self_check(flash, device):
    """Why kernels.cu must not be trusted, or None. On a random causal batch of each head dim, its
    output and dQ, dK, dV in bf16 must be within twice SDPA's own bf16 error of an fp32 reference
    (the rule of FlashAttention's tests); else the warning names each one that is not, with both errors."""
    device, generator = torch.device(device), torch.Generator().manual_seed(0)  # the training's random stream is left alone
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            for D in (64, 128):
                q, k, v, do = (torch.randn(2, 3, 200, D, generator=generator).to(device) for _ in range(4))
                errors = flash_errors(flash, q, k, v, do)
                wrong = [f"{name} {ours:.1e} (sdpa {sdpa:.1e})" for name, (ours, sdpa) in errors.items()
                         if ours > 2 * sdpa + 1e-4]  # + 1e-4: where sdpa is exact, a last-bit difference is no error
                if wrong:
                    return (f"kernels.cu failed its self-check against sdpa (causal, B=2, H=3, T=200, D={D}; max error "
                            f"against fp32, more than twice sdpa's): {', '.join(wrong)}")
    except RuntimeError as e:  # a launch or shape error of the kernel itself
        return f"kernels.cu failed its self-check: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
    return None


def _outputs_and_gradients(fn, q, k, v, do):
    """fn(q, k, v) and the gradients dq, dk, dv for the upstream gradient do."""
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = fn(q, k, v)
    out.backward(do)
    return [out.detach(), q.grad, k.grad, v.grad]


def flash_errors(flash, q, k, v, do):
    """{"out" | "dq" | "dk" | "dv": (flash's error, sdpa's error)}: the largest |error| of causal attention
    by `flash` and by sdpa, both on q, k, v and the upstream gradient do in bf16, against the math
    backend in fp32 on the same (bf16-rounded) numbers."""
    q, k, v, do = (x.to(torch.bfloat16) for x in (q, k, v, do))
    reference = _outputs_and_gradients(lambda *x: attention(*x, "math"), q.float(), k.float(), v.float(), do.float())

    def errors(fn):
        return [(a.float() - b).abs().max().item() for a, b in zip(_outputs_and_gradients(fn, q, k, v, do), reference)]
    return dict(zip(("out", "dq", "dk", "dv"), zip(errors(flash), errors(lambda *x: attention(*x, "sdpa")))))


def _flash_refuses(q, k, v, mask):
    """Why kernels.cu cannot take this call, or None if it can."""
    if mask is not None:
        return "an explicit attention mask (padded batches, KV-cache generation) is not in kernels.cu"
    if not q.is_cuda:
        return f"the tensors are on {q.device.type}, not a GPU"
    if q.dtype != torch.bfloat16:
        return f"kernels.cu takes bfloat16, not {q.dtype} (train under autocast on a GPU)"
    if q.size(-1) not in (64, 128):
        return f"kernels.cu has head dims 64 and 128, not {q.size(-1)}"
    if q.shape != k.shape:
        return "kernels.cu needs as many keys as queries (no KV cache)"
    extension = _flash_extension(q.device)
    return extension if isinstance(extension, str) else None


def _stream(x):
    return torch.cuda.current_stream(x.device).cuda_stream


def _aligned(x):
    """Contiguous and 16-byte aligned, as kernels.cu's 16-byte loads need."""
    x = x.contiguous()
    return x if x.data_ptr() % 16 == 0 else x.clone()


class FlashAttentionCUDA(torch.autograd.Function):
    """Causal attention by kernels.cu: (B, H, T, D) bf16 on a GPU, D 64 or 128."""

    @staticmethod
    def forward(ctx, q, k, v):
        q, k, v = _aligned(q), _aligned(k), _aligned(v)
        with torch.cuda.device(q.device):
            o, lse = _flash_extension().forward(q, k, v, _stream(q))
        ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        with torch.cuda.device(q.device):
            return tuple(_flash_extension().backward(_aligned(do.to(q.dtype)), q, k, v, o, lse, _stream(q)))
