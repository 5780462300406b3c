"""The GPT, KV-cache generation and checkpoints (model.py), and the attention backends it switches between."""
import pytest
import torch

from data.tokenizer import get_tokenizer, special_id
from attention import attention, resolve_attention
from model import (SHIFT, Canon, CheckpointError, GPT, GPTConfig, KVCache, apply_rope, generate, load_checkpoint,
                   model_from_checkpoint, rope_tables, sample_next, save_checkpoint)

PAD, EOT = special_id("<|pad|>"), special_id("<|endoftext|>")
VOCAB = get_tokenizer().n_vocab


def tiny_model(attn="sdpa", seed=0):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=64, n_layer=2, n_head=2, n_embd=32), attn=attn)
    with torch.no_grad():  # break the zero-initialised symmetry a little more so outputs differ per token
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def test_math_and_sdpa_backends_agree():
    q, k, v = torch.randn(3, 2, 4, 9, 8).unbind(0)
    assert torch.allclose(attention(q, k, v, "math"), attention(q, k, v, "sdpa"), atol=1e-5)
    mask = torch.rand(2, 1, 9, 9) > 0.3
    mask |= torch.eye(9, dtype=torch.bool)
    assert torch.allclose(attention(q, k, v, "math", mask), attention(q, k, v, "sdpa", mask), atol=1e-5)


def test_attention_is_causal():
    m = tiny_model()
    x = torch.randint(0, VOCAB, (1, 12))
    y = x.clone()
    y[0, 8:] = torch.randint(0, VOCAB, (4,))
    assert torch.allclose(m(x)[0, :8], m(y)[0, :8], atol=1e-6)


def test_rope_makes_attention_scores_depend_on_the_relative_position_only():
    cos, sin = rope_tables(head_dim=8, length=32, base=10000.0)
    q, k = torch.randn(2, 8).unbind(0)
    rotated = lambda x, pos: apply_rope(x.view(1, 1, 1, 8), cos[pos:pos + 1], sin[pos:pos + 1]).view(8)  # noqa: E731
    score = lambda m, n: rotated(q, m) @ rotated(k, n)  # noqa: E731  query at position m, key at n
    assert score(9, 4) == pytest.approx(score(25, 20), abs=1e-5)  # the same distance, 5: the same score
    assert abs(score(9, 4) - score(9, 7)) > 1e-3  # another distance: another score (the identity would give the same)


def test_canon_mixes_exactly_the_current_and_the_three_previous_positions():
    torch.manual_seed(0)
    canon = Canon(6)
    with torch.no_grad():
        canon.weight.normal_()
    x = torch.randn(1, 10, 6)
    keep = torch.ones(1, 10, dtype=torch.bool)
    t = 8
    for back in range(SHIFT + 2):  # change the input `back` positions before t
        y = x.clone()
        y[0, t - back] += 1.0
        moved = not torch.allclose(canon(x, keep, None, 0)[0, t], canon(y, keep, None, 0)[0, t])
        assert moved == (back <= SHIFT), f"position t - {back} {'should' if back <= SHIFT else 'should not'} reach t"


def test_both_heads_in_one_pass_are_the_two_heads_read_apart():
    m, x = tiny_model(), torch.randint(0, VOCAB, (2, 7))
    logits, scores = m(x, head="both")
    assert torch.allclose(logits, m(x)) and torch.allclose(scores, m(x, head="scalar"))


def test_an_unknown_attention_backend_is_refused():
    # where `cuda` falls back to sdpa, and where it does not: tests/test_kernels.py
    with pytest.raises(ValueError, match="unknown attention backend 'flash': choose from math, sdpa, cuda"):
        resolve_attention("flash")


@pytest.mark.parametrize("attn", ["math", "sdpa"])
@pytest.mark.parametrize("with_mask", [True, False])  # generate passes no mask where nothing is padded
def test_kv_cache_matches_full_forward(attn, with_mask):
    m = tiny_model(attn)  # its Canon weights are random, not zero: the cache must carry their inputs
    x = torch.randint(0, VOCAB, (2, 20))
    full = m(x)
    cache = KVCache(m.cfg.n_layer, 20)
    pieces = [m(x[:, :7], kv_cache=cache)]
    for t in range(7, 20):
        mask = torch.ones(2, 1, 1, t + 1, dtype=torch.bool) if with_mask else None
        positions = torch.full((2, 1), t) if t % 2 else None  # left out, they follow what the cache holds
        pieces.append(m(x[:, t:t + 1], positions=positions, mask=mask, kv_cache=cache))
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)


@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_queries_that_are_the_last_of_the_keys_see_every_key_before_them(attn):
    q, k, v = torch.randn(3, 2, 2, 9, 8).unbind(0)
    full = attention(q, k, v, attn)  # (B, H, 9, D): plain causal attention
    for Tq in (1, 4):  # the last Tq positions as queries against all 9 keys, no mask given
        assert torch.allclose(attention(q[:, :, -Tq:], k, v, attn), full[:, :, -Tq:], atol=1e-6)


@pytest.mark.parametrize("stop_ids", [(), tuple(range(0, VOCAB, 6))])  # with stops, finished rows leave the batch
def test_batched_generation_with_padding_matches_full_forward_of_each_sequence(stop_ids):
    m = tiny_model()
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15], [20], [30, 31], [40, 41, 42, 43], [50, 51, 52], [60], [70, 71]]
    g = torch.Generator().manual_seed(0)
    tokens, logprobs = generate(m, prompts, 10, PAD, stop_ids=stop_ids, temperature=1.0, generator=g)
    if stop_ids:  # each row ends at its own first stop token (or runs to 10), at several different lengths
        assert all(not set(new[:-1]) & set(stop_ids) and (new[-1] in stop_ids or len(new) == 10) for new in tokens)
        assert len({len(new) for new in tokens}) > 2
    for prompt, new, lp in zip(prompts, tokens, logprobs):
        seq = torch.tensor([prompt + new])
        reference = torch.log_softmax(m(seq)[0, len(prompt) - 1:-1], -1)  # predictions of the new tokens
        expected = reference.gather(-1, torch.tensor(new)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(lp), expected, atol=1e-4)


def test_greedy_generation_is_the_argmax_of_the_full_forward():
    m = tiny_model()
    prompt = [3, 4, 5, 6]
    tokens, _ = generate(m, [prompt], 12, PAD)
    seq = list(prompt)
    for _ in range(12):
        seq.append(int(m(torch.tensor([seq]))[0, -1].argmax()))
    assert tokens[0] == seq[len(prompt):]


def test_each_sequence_stops_at_its_own_stop_token():
    m = tiny_model()
    prompts = [[1, 2, 3], [4, 5]]
    full, _ = generate(m, prompts, 15, PAD)  # greedy: a finished sequence leaves the batch, which changes the sampling draws
    k = next(i for i in range(1, 15) if full[0][i] not in full[0][:i])
    stop = full[0][k]  # a token the first sequence emits for the first time at position k
    tokens, logprobs = generate(m, prompts, 15, PAD, stop_ids=(stop,))
    assert generate(m, prompts, 15, PAD, stop_ids=(stop,), drop_finished=False)[0] == tokens  # the batch kept whole: the same
    assert tokens[0] == full[0][:k + 1]
    n = next((i + 1 for i, t in enumerate(full[1]) if t == stop), 15)
    assert tokens[1] == full[1][:n] and len(logprobs[1]) == n


def test_top_k_one_is_greedy_and_samples_stay_in_the_top_k():
    logits = torch.randn(64, 50)
    token, _ = sample_next(logits, 1.0, 1)
    assert torch.equal(token, logits.argmax(-1))
    token, logprob = sample_next(logits, 0.7, 5, torch.Generator().manual_seed(0))
    assert (logits.gather(-1, token[:, None]) >= logits.topk(5).values[:, -1:]).all()
    assert torch.allclose(logprob, torch.log_softmax(logits / 0.7, -1).gather(-1, token[:, None]).squeeze(-1))


def test_each_prompt_gets_its_own_room_in_the_context():
    m = tiny_model()  # block_size 64
    short, long = [3, 4, 5], [7] * 60
    alone, _ = generate(m, [short], 100, PAD)
    together, logprobs = generate(m, [long, short], 100, PAD)
    assert len(alone[0]) == 61
    assert together[1] == alone[0], "a long prompt in the batch cut the short one off: does each prompt get its own room?"
    assert len(together[0]) == 4 and len(logprobs[0]) == 4  # and the long one stops where the block ends


def test_generation_refuses_a_prompt_longer_than_the_context():
    with pytest.raises(ValueError, match="block_size"):
        generate(tiny_model(), [[1] * 64], 5, PAD)


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip(tmp_path):
    m = tiny_model()
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, m, step=7)
    ckpt = load_checkpoint(path, expect_config=m.cfg)
    assert ckpt["step"] == 7
    m2 = model_from_checkpoint(ckpt).eval()
    x = torch.randint(0, VOCAB, (1, 10))
    assert torch.equal(m(x), m2(x))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, tiny_model(), step=1)

    def broken_save(obj, f):
        open(f, "wb").write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, tiny_model(), step=2)
    assert load_checkpoint(path)["step"] == 1  # the old checkpoint is intact


def test_checkpoint_from_another_tokenizer_or_config_is_refused(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    m = tiny_model()
    save_checkpoint(path, m)
    ckpt = torch.load(path, weights_only=True)
    ckpt["tokenizer"] = "gpt2:0123"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="tokenizer gpt2:0123"):
        load_checkpoint(path)
    save_checkpoint(path, m)
    other = GPTConfig(**{**m.cfg.__dict__, "n_layer": 3})
    with pytest.raises(CheckpointError, match="n_layer=2 .want 3."):
        load_checkpoint(path, expect_config=other)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["blocks.0.canon_attn.weight"]  # as a model.py without Canon layers saved it
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="another version of model.py"):
        load_checkpoint(path)


def test_missing_or_garbage_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(str(tmp_path / "junk.pt"))
