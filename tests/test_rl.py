"""Reinforcement learning (train_rl.py): the math against values computed by hand, one update on a
toy behaviour, and the stage end to end (resume, the NaN guard, bad input)."""
import copy
import math
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import train_rl
import train_sft
from common import UserError, read_split, read_task
from data.task import EOT, STEP
from data.tokenizer import encode, get_tokenizer, special_id
from data.verify import Verdict
from model import GPT, CheckpointError, GPTConfig, load_checkpoint, model_from_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- the math

def test_gae_matches_hand_computed_values():
    # one prompt position (mask 0), three response tokens, one padding position
    rewards = torch.tensor([[5.0, 0.0, 0.0, 1.0, 7.0]])
    values = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    advantages, returns = train_rl.gae(rewards, values, mask, lam=0.9)
    # delta_3 = 1 - 0.7 = 0.3 (terminal: no next value)      A_3 = 0.3
    # delta_2 = 0 + 0.7 - 0.6 = 0.1                          A_2 = 0.1 + 0.9 * 0.3 = 0.37
    # delta_1 = 0 + 0.6 - 0.5 = 0.1                          A_1 = 0.1 + 0.9 * 0.37 = 0.433
    assert advantages.tolist()[0] == pytest.approx([0.0, 0.433, 0.37, 0.3, 0.0])
    assert returns.tolist()[0] == pytest.approx([0.0, 0.933, 0.97, 1.0, 0.0])


def test_gae_with_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.5, -0.25, 2.0]])
    values = torch.tensor([[1.0, 2.0, 3.0]])
    advantages, returns = train_rl.gae(rewards, values, torch.ones(1, 3), lam=1.0)
    assert advantages.tolist()[0] == pytest.approx([2.25 - 1.0, 1.75 - 2.0, 2.0 - 3.0])
    assert returns.tolist()[0] == pytest.approx([2.25, 1.75, 2.0])


@pytest.mark.parametrize("ratio, advantage, loss, clipped", [
    (1.1, 1.0, -1.1, False),   # inside the range: the plain ratio * A
    (1.5, 1.0, -1.2, True),    # A > 0, ratio above 1 + eps: capped at (1 + eps) A, no gradient
    (0.5, 1.0, -0.5, False),   # A > 0, ratio below 1 - eps: the unclipped term is smaller, kept
    (0.9, -1.0, 0.9, False),   # inside the range, negative advantage
    (0.5, -1.0, 0.8, True),    # A < 0, ratio below 1 - eps: capped at (1 - eps) A, no gradient
    (1.5, -1.0, 1.5, False),   # A < 0, ratio above 1 + eps: the unclipped term is smaller, kept
])
def test_clipped_policy_loss_inside_and_outside_the_clip_range(ratio, advantage, loss, clipped):
    logprobs = torch.tensor([[math.log(ratio)]], requires_grad=True)
    got, clip_fraction = train_rl.policy_loss(logprobs, torch.zeros(1, 1), torch.tensor([[advantage]]), torch.ones(1, 1), 0.2)
    assert got.item() == pytest.approx(loss)
    assert clip_fraction.item() == float(clipped)
    got.backward()
    # d(-ratio * A)/d logprob = -ratio * A where the clip does not bite, 0 where it does
    assert logprobs.grad.item() == pytest.approx(0.0 if clipped else -ratio * advantage)


def test_policy_loss_averages_over_response_tokens_only():
    logprobs = torch.zeros(1, 3)
    advantages = torch.tensor([[2.0, 4.0, 100.0]])
    loss, _ = train_rl.policy_loss(logprobs, logprobs, advantages, torch.tensor([[1.0, 1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(-3.0)


def test_value_loss_is_clipped_around_the_old_value():
    old, returns, mask = torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2)
    # V = 0.9 moved 0.4 towards the return: clipped to 0.7, error 0.3^2 beats 0.1^2
    # V = 0.6 moved 0.1 (inside): error 0.4^2
    loss = train_rl.value_loss(torch.tensor([[0.9, 0.6]]), old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.09 + 0.16) / 2)
    # moving away from the return is never clipped: V = 0.0, error 1.0^2
    assert train_rl.value_loss(torch.tensor([[0.0]]), old[:, :1], returns[:, :1], mask[:, :1], 0.2).item() == pytest.approx(0.5)


def test_kl_estimators_match_hand_values_and_are_unbiased():
    # a token with pi = 1/2, ref = 1/4: k1 = log 2; k3 = r - 1 - log r with r = 1/2
    k1 = train_rl.kl_k1(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25)))
    k3 = train_rl.kl_k3(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25)))
    assert k1.item() == pytest.approx(math.log(2))
    assert k3.item() == pytest.approx(0.5 - 1 - math.log(0.5))
    assert train_rl.kl_k3(torch.tensor(-1.3), torch.tensor(-1.3)).item() == 0.0
    # the expectation of either under pi is the exact KL(pi || ref)
    pi, ref = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.2, 0.6])
    exact = (pi * (pi / ref).log()).sum()
    for estimator in (train_rl.kl_k1, train_rl.kl_k3):
        assert (pi * estimator(pi.log(), ref.log())).sum().item() == pytest.approx(exact.item())
    assert (train_rl.kl_k3(pi.log(), ref.log()) >= 0).all()


def test_rewards_score_on_final_token_step_rewards_where_given_nothing_on_padding():
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 0, 0],     # prompt, 5 response tokens, padding
                         [0, 0, 1, 1, 1, 1, 1, 1.0]])  # prompt, 6 response tokens
    scores = torch.tensor([1.0, -1.0])
    step_rewards = torch.zeros(2, 8)
    step_rewards[0, [2, 4, 7]] = 0.25  # the last one is on padding: dropped
    step_rewards[1, 3] = -0.5
    kl = torch.full((2, 8), 2.0)
    rewards = train_rl.assemble_rewards(mask, scores, step_rewards, kl, kl_coef=0.1)
    assert rewards.tolist()[0] == pytest.approx([0, -0.2, 0.05, -0.2, 0.05, 0.8, 0, 0])
    assert rewards.tolist()[1] == pytest.approx([0, 0, -0.2, -0.7, -0.2, -0.2, -0.2, -1.2])
    no_prm = train_rl.assemble_rewards(mask, scores, None, kl, kl_coef=0.0)
    assert no_prm.tolist() == [[0, 0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, -1]]


def constant_prm(probability):
    """A GPT whose scalar head says `probability` everywhere."""
    prm = GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=64, n_layer=1, n_head=2, n_embd=16))
    torch.nn.init.constant_(prm.scalar_head.bias, math.log(probability / (1 - probability)))
    return prm


def test_process_rewards_sit_on_step_ends_in_the_targets_layout():
    prompt = encode("a = 3; b = a + a; ? b\n")
    finished = encode("b = a + a = 3 + 3 = 6<|step|>answer: 6<|endoftext|>")
    cut_off = encode("b = a + a = 3 + 3 = 6<|step|>answer")
    T = len(prompt) + len(finished) - 1
    rewards = train_rl.prm_step_rewards(constant_prm(0.75), [prompt, prompt], [finished, cut_off], T)
    step_at = len(prompt) + finished.index(special_id(STEP))  # sequence position of the step token
    expected = torch.zeros(2, T)
    expected[:, step_at - 1] = 0.25  # target index = sequence position - 1
    expected[0, T - 1] = 0.25  # the end-of-text closes the answer step; the cut-off solution has none
    assert torch.allclose(rewards, expected, atol=1e-6)


def test_grpo_advantages_are_standardised_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    advantages = train_rl.grpo_advantages(rewards, group_size=4)
    third = math.sqrt(3)  # group 1: mean 1/4, std sqrt(3)/4
    assert advantages[:4].tolist() == pytest.approx([third, -1 / third, -1 / third, -1 / third], rel=1e-5)
    assert advantages[4:8].tolist() == [0.0, 0.0, 0.0, 0.0]  # all equal: nothing to learn
    assert advantages[8:].tolist() == pytest.approx([1.0, -1.0, 1.0, -1.0], rel=1e-5)


def test_whitened_advantages_have_zero_mean_and_unit_variance_on_the_mask():
    x = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = train_rl.masked_whiten(x, mask)
    assert w.tolist()[0] == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5), 0.0], rel=1e-5)


def test_verifier_scores_right_wrong_and_unfinished():
    right, wrong = Verdict(answer_correct=True, finished=True), Verdict(finished=True)
    unfinished = Verdict(answer_correct=True, finished=False)
    assert train_rl.verifier_scores([right, wrong, unfinished], "outcome", 0.5).tolist() == [1.0, 0.0, -0.5]
    assert train_rl.verifier_scores([right, wrong, unfinished], "process", 0.5).tolist() == [0.0, 0.0, -0.5]


# ----------------------------------------------------------------------------- one update on a toy behaviour

@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_one_iteration_raises_the_probability_of_a_rewarded_behaviour(algo):
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=32, n_layer=1, n_head=2, n_embd=16))
    reference = copy.deepcopy(policy).requires_grad_(False)
    critic = copy.deepcopy(policy) if algo == "ppo" else None
    hp = train_rl.parse_args(["--preset", "test", "--algo", algo, "--lr", "3e-3", "--minibatch", "4", "--group-size", "8"])
    prompt, good, bad, eot = encode("a = 1; ? a\n"), encode("1")[0], encode("2")[0], special_id(EOT)
    responses = [[good, eot], [bad, eot]] * 4  # the rewarded behaviour: answer "1"
    scores = torch.tensor([1.0, 0.0] * 4)

    def probability(token):
        with torch.no_grad():
            return torch.softmax(policy(torch.tensor([prompt]))[0, -1], -1)[token].item()

    before = probability(good), probability(bad)
    batch, log = train_rl.build_batch(policy, reference, critic, None, [prompt] * 8, responses, scores, hp)
    assert log["reward"] == pytest.approx(0.5) and log["kl"] == pytest.approx(0.0, abs=1e-6)
    optimizers = [train_rl.make_optimizer(m, hp.lr) if m is not None else None for m in (policy, critic)]
    stats = train_rl.ppo_update(policy, critic, *optimizers, batch, hp, torch.Generator().manual_seed(0))
    # PPO's clip keeps one iteration's step small (ratio about 1 +- eps); the direction is the test
    assert probability(good) > 1.1 * before[0]
    assert probability(bad) < before[1] / 1.1
    assert 0 < stats["approx_kl"] and 0 <= stats["clip_fraction"] <= 1
    assert ("value_loss" in stats) == (algo == "ppo")


# ----------------------------------------------------------------------------- the stage end to end

@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl")
    subprocess.run([sys.executable, "data/prepare.py", "--preset", "test", "--out", str(out)], cwd=ROOT, check=True)
    train_sft.main(["--preset", "test", "--out", str(out)])
    return out


def run_dir(sft_dir, path):
    os.makedirs(path)
    for stage in ("data", "sft"):
        os.symlink(sft_dir / stage, path / stage)
    return path


RL_FLAGS = ["--preset", "test", "--device", "cpu", "--iterations", "2", "--rollouts", "8", "--minibatch", "4", "--critic-warmup", "1",
            "--eval-every", "1", "--lr", "1e-3"]


def test_kill_and_resume_gives_the_same_run_and_writes_per_bin_metrics(sft_dir, tmp_path):
    whole, killed = run_dir(sft_dir, tmp_path / "whole"), run_dir(sft_dir, tmp_path / "killed")
    metrics = train_rl.main(RL_FLAGS + ["--out", str(whole)])
    assert train_rl.main(RL_FLAGS + ["--out", str(killed)], stop_after=2) is None  # after the warm-up and one update
    resumed = train_rl.main(RL_FLAGS + ["--out", str(killed), "--resume"])
    a = torch.load(whole / "rl" / "ckpt.pt", weights_only=True)
    b = torch.load(killed / "rl" / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["critic"][k], b["critic"][k]) for k in a["critic"])
    assert resumed["training_log"] == metrics["training_log"]
    assert [h["phase"] for h in metrics["training_log"]] == ["critic warm-up", "policy", "policy"]
    assert set(metrics["accuracy_by_difficulty"]) == set(metrics["before"]["accuracy_by_difficulty"]) == {"1", "2", "3", "4"}
    assert metrics["value_model_init"] == "sft"
    for key in ("reward", "accuracy", "kl", "clip_fraction", "approx_kl", "entropy", "value_loss", "length"):
        assert key in metrics["training_log"][-1]
    assert os.path.exists(whole / "rl" / "metrics.json")


def test_process_rewards_and_the_nan_guard_keeping_the_last_good_checkpoint(sft_dir, tmp_path, monkeypatch, capsys):
    out = run_dir(sft_dir, tmp_path / "nan")
    os.makedirs(out / "prm")
    shutil.copy(sft_dir / "sft" / "ckpt.pt", out / "prm" / "ckpt.pt")  # any GPT checkpoint serves as a PRM here
    flags = RL_FLAGS + ["--out", str(out), "--reward", "both", "--critic-warmup", "0"]
    train_rl.main(flags, stop_after=1)
    assert "reward both, value model from prm" in capsys.readouterr().out
    good = torch.load(out / "rl" / "ckpt.pt", weights_only=True)["model"]
    monkeypatch.setattr(train_rl, "policy_loss", lambda *a: (torch.tensor(float("nan"), requires_grad=True), torch.tensor(0.0)))
    with pytest.raises(UserError, match=r"stopped at iteration 2: policy loss is nan; kept the last good checkpoint.*iteration 1"):
        train_rl.main(flags + ["--resume"])
    kept = torch.load(out / "rl" / "ckpt.pt", weights_only=True)
    assert kept["step"] == 1 and all(torch.equal(good[k], kept["model"][k]) for k in good)
    with pytest.raises(UserError, match=r"stopped at iteration 1: policy loss is nan; kept the last good checkpoint, no checkpoint yet"):
        train_rl.main(flags)  # a fresh run: the earlier run's checkpoint is not its own
    with pytest.raises(SystemExit, match="--temperature 0.0: RL samples its rollouts"):
        train_rl.main(flags + ["--temperature", "0"])


def test_missing_or_foreign_checkpoints_are_refused(sft_dir, tmp_path):
    out = tmp_path / "bad"
    os.makedirs(out / "sft")
    os.symlink(sft_dir / "data", out / "data")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train_rl.main(["--preset", "test", "--out", str(out)])
    ckpt = torch.load(sft_dir / "sft" / "ckpt.pt", weights_only=True)
    ckpt["tokenizer"] = "gpt2:feedbeef"
    torch.save(ckpt, out / "sft" / "ckpt.pt")
    with pytest.raises(CheckpointError, match="tokenizer gpt2:feedbeef"):
        train_rl.main(["--preset", "test", "--out", str(out)])


def test_process_reward_without_a_prm_is_one_line_error(sft_dir, tmp_path):
    out = run_dir(sft_dir, tmp_path / "noprm")
    result = subprocess.run([sys.executable, "train_rl.py", "--preset", "test", "--out", str(out), "--reward", "process"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert lines == [f"error: --reward process needs the process reward model at {out}/prm/ckpt.pt: run train_prm.py first"]


def test_iteration_flops_counts_every_pass_by_hand():
    hp = SimpleNamespace(epochs=2)
    # PPO with a PRM: 5 forward passes (sampling, old, reference, values, PRM), then 2 epochs of policy and critic
    assert train_rl.iteration_flops(10, 100, hp, critic=object(), prm=object(), warming=False) == 10 * 100 * (2 * 5 + 6 * 2 * 2)
    # GRPO with the outcome reward: sampling, old, reference; 2 epochs of the policy alone
    assert train_rl.iteration_flops(10, 100, hp, critic=None, prm=None, warming=False) == 10 * 100 * (2 * 3 + 6 * 2)
    # critic warm-up: the policy does not train
    assert train_rl.iteration_flops(10, 100, hp, critic=object(), prm=None, warming=True) == 10 * 100 * (2 * 4 + 6 * 2)


def log_row(entropy=0.1, length=30.0, finished=1.0, phase="policy"):
    return {"phase": phase, "entropy": entropy, "length": length, "finished": finished}


@pytest.mark.parametrize("last, reason", [
    (log_row(), None),
    (log_row(entropy=0.55), None),                        # 5.5x the first, but up by under 0.5 nats: not noise yet
    (log_row(entropy=0.65), "entropy 0.65 nats per token, from 0.10"),
    (log_row(length=60), None),
    (log_row(length=61), "solutions 61 tokens long, from 30"),
    (log_row(finished=0.4), "40% of the solutions finished, from 100%"),
])
def test_runaway_names_entropy_length_and_unfinished_collapses(last, reason):
    warmup = {"phase": "critic warm-up", "length": 5.0, "finished": 1.0}  # no entropy: the policy did not move
    assert train_rl.runaway([warmup, log_row(), last]) == reason


def test_fell_names_a_drop_of_more_than_two_standard_errors_below_the_best():
    log = [{"iteration": 0, "accuracy": 0.5}, {"iteration": 8, "accuracy": 0.6}, {"iteration": 16, "accuracy": 0.6}]
    # best 0.6 (the first of equals, iteration 8); two standard errors on 100 problems: 2 sqrt(0.6 x 0.4 / 100) = 0.098
    assert train_rl.fell(log + [{"iteration": 24, "accuracy": 0.51}], 100) is None
    assert train_rl.fell(log + [{"iteration": 24, "accuracy": 0.50}], 100) == (
        "validation accuracy 0.500, more than two standard errors (0.098) below its best, 0.600 at iteration 8")
    assert train_rl.fell(log, 100) is None


@pytest.mark.parametrize("where", ["runaway", "fell"])
def test_a_collapse_or_a_fall_stops_with_one_line_and_keeps_validations_best(sft_dir, tmp_path, monkeypatch, capsys, where):
    first = run_dir(sft_dir, tmp_path / "first")  # the same run, killed after iteration 1's validation: its policy
    train_rl.main(RL_FLAGS + ["--out", str(first), "--iterations", "5"], stop_after=2)
    out = run_dir(sft_dir, tmp_path / "collapse")
    if where == "runaway":  # at the third iteration (the warm-up's, then two updates), before its validation
        monkeypatch.setattr(train_rl, "runaway", lambda history: "entropy 9.99 nats per token" if len(history) == 3 else None)
    else:  # at the second validation after iteration 0's
        monkeypatch.setattr(train_rl, "fell", lambda val_log, n: "entropy 9.99 nats per token" if len(val_log) == 3 else None)
    metrics = train_rl.main(RL_FLAGS + ["--out", str(out), "--iterations", "5"])
    best = max(metrics["val_log"], key=lambda v: v["accuracy"])["iteration"]  # 0 (the SFT policy) or 1
    assert f"rl: stopped at iteration 2: entropy 9.99 nats per token; kept validation's best, the policy of iteration {best}" \
        in capsys.readouterr().out
    assert metrics["stopped"] == "stopped at iteration 2: entropy 9.99 nats per token"
    assert len(metrics["training_log"]) == 3 and metrics["kept_iteration"] == best  # the warm-up, two updates, and no more
    kept = load_checkpoint(out / "rl" / "ckpt.pt")
    expected = load_checkpoint(first / "rl" / "ckpt.pt")["model"] if best else load_checkpoint(sft_dir / "sft" / "ckpt.pt")["model"]
    assert all(torch.equal(kept["model"][k], expected[k]) for k in expected)
    test = read_split(out, "test")
    assert metrics["outcomes"] == train_rl.evaluate_policy(model_from_checkpoint(kept), test, read_task(out), "cpu")["outcomes"]


def test_rollouts_go_where_the_reward_varies_on_new_problems(monkeypatch):
    task = train_rl.PRESETS["test"].task
    accuracy = {"1": 1.0, "2": 0.5, "3": 0.9}
    monkeypatch.setattr(train_rl, "evaluate_policy", lambda policy, sample, *a, **k: {
        "accuracy_by_difficulty": accuracy, "problems_by_difficulty": {}, "interval_by_difficulty": {}})
    weights, _ = train_rl.training_mix(None, task, "cpu", 4, seed=0)
    assert weights == pytest.approx({1: 0.0, 2: 0.25 / 0.34, 3: 0.09 / 0.34})
    problems = train_rl.new_problems(task, weights, 200, "s", torch.Generator().manual_seed(0))
    counts = {d: sum(r["difficulty"] == d for r in problems) for d in (1, 2, 3)}
    assert counts[1] == 0 and 120 < counts[2] < 175 and counts[2] + counts[3] == 200
    from data.task import parse_problem, split_of
    assert all(split_of(parse_problem(r["problem"], task.p)) == "train" for r in problems)  # never val or test
    assert train_rl.listed_mix((3, 3, 1)) == pytest.approx({1: 1 / 3, 3: 2 / 3})  # --train-d 3,3,1
