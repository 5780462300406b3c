"""Step labels (the oracle's and Monte Carlo), the verifier measures, and train_prm.py end to end."""
import os
import random
import subprocess
import sys
from functools import partial

import pytest
import torch

import common
import train_prm
import train_sft
from common import PRESETS
from data.task import parse_problem, prompt_text
from data.tokenizer import decode, encode
from data.verify import verify
from model import load_checkpoint, model_from_checkpoint
from reward import step_scores
from tests.traces import D_RIGHT, D_WRONG, E_RIGHT, LINE, P, PROBLEM, X_WRONG, trace
from train_prm import oracle_step_labels, oracle_token_labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------- oracle labels

def test_a_right_solution_has_every_step_and_the_answer_labelled_right():
    assert oracle_step_labels(PROBLEM, trace(D_RIGHT, E_RIGHT), P) == [1, 1, 1]


def test_every_step_after_the_first_error_is_labelled_wrong_even_if_right_in_itself():
    # the x step is wrong (and not needed); the e step and the answer are right, but the chain is not
    assert oracle_step_labels(PROBLEM, trace(D_RIGHT, X_WRONG, E_RIGHT), P) == [1, 0, 0, 0]
    # an error carried forward: both steps and the answer wrong
    assert oracle_step_labels(PROBLEM, trace(D_WRONG, "e = d - 3 = 14 - 3 = 11", answer=11), P) == [0, 0, 0]
    # right steps, wrong answer: only the answer step is wrong
    assert oracle_step_labels(PROBLEM, trace(D_RIGHT, E_RIGHT, answer=8), P) == [1, 1, 0]


def test_a_step_taken_back_no_longer_counts_against_the_chain():
    corrected = trace(D_WRONG, "<|back|>" + D_RIGHT, E_RIGHT)
    assert oracle_step_labels(PROBLEM, corrected, P) == [0, 1, 1, 1]
    # taking back a right step and writing a wrong one: wrong from there on
    assert oracle_step_labels(PROBLEM, trace(D_RIGHT, "<|back|>" + D_WRONG, E_RIGHT), P) == [1, 0, 0, 0]
    # nothing to take back: the step is wrong
    assert oracle_step_labels(PROBLEM, trace("<|back|>" + D_RIGHT, E_RIGHT), P) == [0, 0, 0]


def test_an_unfinished_solution_has_no_answer_step():
    assert oracle_step_labels(PROBLEM, D_RIGHT + "<|step|>e = d - 3 = 1", P) == [1]
    assert oracle_step_labels(PROBLEM, "d = a *", P) == []


def test_auroc_against_hand_computed_pairs():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of the 4 pairs ordered right
    assert train_prm.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # positives 0.5, 0.9 vs negatives 0.5, 0.2: a tie counts half, (0.5 + 1 + 1 + 1) / 4
    assert train_prm.auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)
    assert train_prm.auroc([0.3, 0.7], [1, 1]) is None


def test_auroc_is_the_fraction_of_right_wrong_pairs_ordered_right():
    r = random.Random(0)
    for _ in range(100):
        n = r.randint(2, 25)
        scores = [r.choice([0.1, 0.2, r.random()]) for _ in range(n)]  # many ties
        labels = [r.randint(0, 1) for _ in range(n)]
        right = [q for q, y in zip(scores, labels) if y]
        wrong = [q for q, y in zip(scores, labels) if not y]
        pairs = [(q > w) + 0.5 * (q == w) for q in right for w in wrong]
        expected = sum(pairs) / len(pairs) if pairs else None
        assert train_prm.auroc(scores, labels) == pytest.approx(expected)


def test_auroc_difference_of_two_verifiers_on_the_same_steps():
    r = random.Random(1)
    groups = []
    for _ in range(30):
        labels = [r.randint(0, 1) for _ in range(6)]
        groups.append(([y + r.random() for y in labels], [r.random() for _ in labels], labels))  # a sees, b guesses
    diff, lo, hi = train_prm.auroc_difference(groups)
    a, b, y = ([q for g in groups for q in g[k]] for k in range(3))
    assert diff == pytest.approx(train_prm.auroc(a, y) - train_prm.auroc(b, y))
    assert 0 < lo < diff < hi
    assert train_prm.auroc_difference([(g[0], g[0], g[2]) for g in groups]) == [0.0, 0.0, 0.0]
    assert train_prm.auroc_difference([([0.5], [0.5], [1])]) is None


def test_auroc_difference_resamples_problems_not_steps():
    """A problem's steps rise and fall together; copying each step 20 times within its problem adds
    no information, so the interval must not narrow (resampling steps would narrow it about 4.5x)."""
    r = random.Random(2)
    groups = [([r.random() + y], [r.random() + 0.3 * y], [y]) for y in (r.randint(0, 1) for _ in range(60))]
    copied = [tuple(v * 20 for v in g) for g in groups]
    (_, lo, hi), (_, lo20, hi20) = train_prm.auroc_difference(groups), train_prm.auroc_difference(copied)
    assert (hi20 - lo20) > 0.7 * (hi - lo)


def judged(solution, scores=None):
    prompt = encode(prompt_text(LINE))
    tokens = encode(solution)
    verdict = verify(parse_problem(LINE, P), solution, P)
    sample = train_prm.judge({"problem": LINE, "difficulty": 2}, prompt, tokens, [-0.1] * len(tokens), verdict, P)
    if scores is not None:
        sample.scores = scores
    return sample


def test_first_error_rates_take_the_earliest_lowest_step_and_the_first_below_a_half():
    hit = judged(trace(D_RIGHT, X_WRONG, E_RIGHT), {"prm": [0.9, 0.1, 0.4, 0.3]})  # labels 1 0 0 0
    miss = judged(trace(D_WRONG, E_RIGHT), {"prm": [0.5, 0.2, 0.6]})               # labels 0 0 0
    tie = judged(trace(D_WRONG, E_RIGHT), {"prm": [0.2, 0.2, 0.6]})                # the earliest of a tie counts
    clean = judged(trace(D_RIGHT, E_RIGHT), {"prm": [0.9, 0.9, 0.9]})              # no error: not counted
    result = train_prm.first_error_rates([hit, miss, tie, clean], "prm")
    assert result["first_error_solutions"] == 3
    assert result["first_error_lowest_rate"] == pytest.approx(2 / 3)
    assert result["first_error_found_rate"] == pytest.approx(2 / 3)  # miss: its first step is not below 1/2
    assert result["first_error_lowest_chance"] == pytest.approx((1 / 4 + 1 / 3 + 1 / 3) / 3)
    assert result["first_error_located_rate"] == 1.0  # miss: its largest drop (1 -> 0.5) is at its first step


def test_the_located_first_error_is_the_largest_drop_of_the_running_lowest_score():
    # P(steps 0..j right) = 0.9, 0.4, 0.05: first error at step 0 with chance 0.1, step 1 0.5, step 2 0.35
    assert train_prm.located_first_error([0.9, 0.4, 0.05], top=1.0) == 1  # the lowest step (2) is not it
    assert train_prm.located_first_error([0.9, 0.4, 0.7, 0.3], top=1.0) == 1  # a step scored up again drops from 0.4
    assert train_prm.located_first_error([1.0, 1.0], top=1.0) == 0  # no drop anywhere: the earliest
    assert train_prm.located_first_error([-0.1, -3.0, -4.0], top=0.0) == 1  # log-probabilities: from 0
    later = judged(trace(D_RIGHT, X_WRONG, E_RIGHT), {"prm": [0.9, 0.3, 0.2, 0.01]})  # labels 1 0 0 0
    result = train_prm.first_error_rates([later], "prm")
    assert (result["first_error_located_rate"], result["first_error_lowest_rate"]) == (1.0, 0.0)


def test_the_confidence_verifier_keeps_the_lowest_token_log_probability_so_far():
    s = judged(trace(D_RIGHT, E_RIGHT))
    s.logprobs = [-0.1] * len(s.solution)
    s.logprobs[s.ends[1] - len(s.prompt) - 3] = -5.0  # inside the second step
    assert train_prm.confidence_scores(s) == [-0.1, -5.0, -5.0]


def token_labels(solution):
    s = judged(solution)
    return [(decode([t]), y) for t, y in zip(s.solution, oracle_token_labels(s, P))]


def test_token_labels_turn_wrong_at_the_first_token_no_right_step_begins_with():
    labels = token_labels(trace(D_WRONG, E_RIGHT))  # d = a * c = 7 * 5 = 14: wrong at the "4"
    wrong = [i for i, (_, y) in enumerate(labels) if y == 0]
    assert "".join(t for t, _ in labels[:wrong[0]]) == "d = a * c = 7 * 5 = 1" and labels[wrong[0]][0] == "4"
    assert all(y == 0 for _, y in labels[wrong[0]:])  # the first-error rule: wrong to the end
    # a variable whose inputs are not known yet: wrong at its first token
    assert token_labels(trace(E_RIGHT))[0] == ("e", 0)
    assert all(y == 1 for _, y in token_labels(trace(D_RIGHT, E_RIGHT)))
    right_answer_wrong_digit = token_labels(trace(D_RIGHT, E_RIGHT, answer=8))
    assert [y for t, y in right_answer_wrong_digit[-2:]] == [0, 0] and right_answer_wrong_digit[-3] == (": ", 1)


def test_token_labels_end_each_step_with_its_step_label():
    for solution in (trace(D_RIGHT, X_WRONG, E_RIGHT), trace(D_WRONG, "<|back|>" + D_RIGHT, E_RIGHT), trace(E_RIGHT)):
        s = judged(solution)
        labels = oracle_token_labels(s, P)
        assert [labels[e - len(s.prompt)] for e in s.ends] == s.labels


# ----------------------------------------------------------------------------- Monte Carlo labels

def test_monte_carlo_labels_converge_to_the_success_probability():
    rng = random.Random(0)

    def stand_in(prefixes):  # a "policy" that finishes prefix q right with probability q, in 3 tokens
        return [(rng.random() < q, 3) for q in prefixes]

    chances = [0.0, 0.05, 0.5, 0.9, 1.0]
    errors = {}
    for m in (4, 4000):
        outcomes = train_prm.monte_carlo_outcomes(chances, stand_in, m, batch_size=1000)
        assert [len(o) for o in outcomes] == [m] * len(chances)
        assert sum(n for o in outcomes for _, n in o) == 3 * m * len(chances)
        soft = [train_prm.monte_carlo_label(o, soft=True) for o in outcomes]
        errors[m] = max(abs(s - q) for s, q in zip(soft, chances))
        hard = [train_prm.monte_carlo_label(o, soft=False) for o in outcomes]
        assert hard[0] == 0.0 and hard[-1] == 1.0  # never right / always right, whatever m
    assert errors[4000] < 0.03 and errors[4000] < errors[4]
    assert train_prm.monte_carlo_label([(True, 1), (False, 1), (False, 1), (True, 1)], soft=True) == 0.5


def test_math_shepherds_hard_label_is_one_when_any_rollout_reaches_the_answer():
    one_of_four = [(False, 3), (True, 3), (False, 3), (False, 3)]
    assert train_prm.monte_carlo_label(one_of_four, soft=False) == 1.0  # any, not all (Wang et al. 2023, eq. 3)
    assert train_prm.monte_carlo_label(one_of_four, soft=True) == 0.25
    assert train_prm.monte_carlo_label([(False, 3)] * 4, soft=False) == 0.0


def test_monte_carlo_labeller_rolls_out_every_step_but_the_answer():
    samples = [judged(trace(D_RIGHT, X_WRONG, E_RIGHT)), judged(trace(D_RIGHT, E_RIGHT, answer=8))]
    asked = []

    def oracle_policy(prefixes):  # a stand-in that reaches the right answer exactly from the right prefixes
        asked.extend(prefixes)
        return [(s.labels[j] == 1, 2) for s, j in prefixes]

    labels, tokens = train_prm.monte_carlo_step_labels(samples, oracle_policy, 3, soft=True)
    assert labels == [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]  # the answer steps: the answer given, right or wrong
    assert len(asked) == 3 * 5 and tokens == 2 * 3 * 5  # 3 + 2 steps before the answers
    rows = train_prm.monte_carlo_agreement(train_prm.step_prefixes(samples), [[(s.labels[j] == 1, 1)] * 16 for s, j in
                                                                            train_prm.step_prefixes(samples)])
    assert [r["hard_agreement"] for r in rows] == [1.0, 1.0, 1.0]
    assert [r["generated_tokens"] for r in rows] == [5, 20, 80]


def test_the_right_token_loss_is_the_label_weighted_next_token_loss():
    torch.manual_seed(0)
    logits, x = torch.randn(1, 5, 7), torch.tensor([[3, 1, 4, 1, 5]])
    targets = torch.tensor([[-1.0, -1.0, 1.0, 0.0, 0.5]])  # the prompt, then tokens 2..4: right, wrong, half sure
    logp = torch.log_softmax(logits[0], -1)
    expected = (1.0 * -logp[1, 4] + 0.5 * -logp[3, 5]) / 1.5  # token t is predicted at position t - 1
    assert torch.isclose(train_prm.right_token_loss(logits, x, targets), expected)


def test_the_next_token_loss_keeps_the_reward_models_trunk_a_policy(sft_dir):
    """With lm_weight the reward model learns to write the tokens labelled right; on the reward
    alone it does not: reference solutions, half of them labelled wrong."""
    sft = load_checkpoint(str(sft_dir / "sft" / "ckpt.pt"))
    examples = []
    for i, r in enumerate(common.read_split(str(sft_dir), "train")[:16]):
        prompt, solution = encode(prompt_text(r["problem"])), encode(r["solution"])
        examples.append((prompt + solution, list(range(len(prompt), len(prompt) + len(solution))), [float(i % 2)] * len(solution)))
    x, targets = train_prm.reward_batch(examples, "cpu")
    loss = {}
    for weight in (0.0, 1.0):
        model = model_from_checkpoint(sft)
        train_prm.train_reward_model(model, examples, 30, 16, 3e-3, 0.05, 0, None, lm_weight=weight)
        with torch.no_grad():
            loss[weight] = train_prm.right_token_loss(model(x), x, targets).item()
    with torch.no_grad():
        before = train_prm.right_token_loss(model_from_checkpoint(sft)(x), x, targets).item()
    assert loss[1.0] + 1 < min(before, loss[0.0])


# ----------------------------------------------------------------------------- end to end

def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prm")
    assert run("data/prepare.py", "--preset", "test", "--out", str(out)).returncode == 0
    train_sft.main(["--preset", "test", "--out", str(out)])
    return out


def test_a_missing_sft_checkpoint_is_one_line(sft_dir, tmp_path):
    os.symlink(sft_dir / "data", tmp_path / "data")
    result = run("train_prm.py", "--preset", "test", "--out", str(tmp_path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: no checkpoint at {tmp_path}/sft/ckpt.pt: run the stage that writes it first"]


def test_train_prm_writes_both_reward_models_and_the_metrics(sft_dir):
    flags = ["--problems", "6", "--agreement-samples", "2", "--steps", "3",
             "--eval-problems", "2", "--labels", "mc-soft", "--rollouts", "2"]
    metrics = train_prm.main(["--preset", "test", "--out", str(sft_dir), *flags])
    assert metrics["train_solutions"] == 6
    assert set(metrics["step_auroc_by_difficulty"]) == set(metrics["verifiers_by_difficulty"]) == {"1", "2", "3", "4"}
    row = metrics["verifiers_by_difficulty"]["1"]
    assert row["samples"] == 2 * PRESETS["test"].prm.eval_samples
    assert {"step_auroc_prm", "step_auroc_confidence", "outcome_auroc_orm", "prm_first_error_lowest_rate"} <= set(row)
    for r in metrics["verifiers_by_difficulty"].values():
        if r["step_auroc_prm_minus_confidence"] is not None:
            diff, lo, hi = r["step_auroc_prm_minus_confidence"]
            assert diff == pytest.approx(r["step_auroc_prm"] - r["step_auroc_confidence"]) and lo <= diff <= hi
    assert [r["rollouts"] for r in metrics["monte_carlo_agreement"]] == [1, 4, 16]
    assert os.path.exists(sft_dir / "prm" / "metrics.json")
    for name in ("ckpt.pt", "orm.pt"):
        ckpt = load_checkpoint(str(sft_dir / "prm" / name), expect_config=PRESETS["test"].model_config())
        assert ckpt["step"] == 3 and ckpt["labels"] == "mc-soft"
    prm = model_from_checkpoint(load_checkpoint(str(sft_dir / "prm" / "ckpt.pt")))
    prompt = encode(prompt_text(LINE))
    (probs,) = step_scores(prm, [prompt + encode(trace(D_RIGHT, E_RIGHT))], [len(prompt)])
    assert len(probs) == 3 and all(0 < q < 1 for q in probs)


def test_every_prm_run_is_judged_on_the_same_samples_whatever_its_labels_drew(sft_dir, tmp_path):
    """Oracle and Monte Carlo labels (and other training sizes) draw different amounts of
    randomness before the evaluation: the head-to-head still needs the very same test samples."""
    rows = []
    for name, flags in (("a", ["--problems", "4"]), ("b", ["--problems", "6", "--labels", "mc-hard", "--rollouts", "2"])):
        out = tmp_path / name
        out.mkdir()
        for x in ("data", "sft"):
            os.symlink(sft_dir / x, out / x)
        metrics = train_prm.main(["--preset", "test", "--out", str(out), "--agreement-samples", "2", "--steps", "2",
                                  "--eval-problems", "2", *flags])
        rows.append(metrics["verifiers_by_difficulty"])
    samples_only = ("samples", "right_steps", "step_auroc_confidence", "confidence_first_error_located_rate")
    assert [[r[k] for r in rows[0].values() for k in samples_only]] == [[r[k] for r in rows[1].values() for k in samples_only]]


def test_the_prm_and_the_orm_trained_apart_are_judged_as_if_trained_together(sft_dir, tmp_path):
    """run.sh trains the ORM on the other lane (--only orm) while the PRM trains (--only prm), then
    judges them (--only evaluate): the same draw of solutions, the same weights, the same table."""
    def fresh(name):
        out = tmp_path / name
        out.mkdir()
        for x in ("data", "sft"):
            os.symlink(sft_dir / x, out / x)
        return ["--preset", "test", "--out", str(out), "--problems", "6", "--agreement-samples", "2", "--steps", "3",
                "--eval-problems", "2"]
    together = train_prm.main(fresh("together"))
    apart = fresh("apart")
    assert train_prm.main([*apart, "--only", "orm"]) is None and train_prm.main([*apart, "--only", "prm"]) is None
    assert not os.path.exists(tmp_path / "apart" / "prm" / "metrics.json")
    split = train_prm.main([*apart, "--only", "evaluate"])
    differ = {"seconds", "wall_time_s", "train_flops"}  # the ORM drew the solutions again: more compute, the same result
    assert {k: v for k, v in split.items() if k not in differ} == {k: v for k, v in together.items() if k not in differ}
    assert split["train_flops"] > together["train_flops"]
    train_prm.main([*apart, "--only", "orm", "--steps", "2"])  # an ORM trained otherwise is no fair baseline
    with pytest.raises(common.UserError, match="trained apart with other settings"):
        train_prm.main([*apart, "--only", "evaluate"])


def test_a_killed_reward_model_training_resumes_to_the_weights_of_an_unbroken_run(sft_dir, tmp_path, monkeypatch, capsys):
    """run.sh reruns a killed PRM stage with --resume: the solutions are sampled again (the same seed draws
    the same ones) and training goes on from the last saved step; other solutions or settings start it over."""
    monkeypatch.setattr(train_prm, "train_reward_model", partial(train_prm.train_reward_model, every=2))
    reward_batch = train_prm.reward_batch

    def flags(name, *more, only="prm"):
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        for x in ("data", "sft"):
            if not (out / x).exists():
                os.symlink(sft_dir / x, out / x)
        return ["--preset", "test", "--out", str(out), "--problems", "6", "--agreement-samples", "2", "--steps", "6",
                "--eval-problems", "2", *more] + (["--only", only] if only else [])

    def kill(name, only="prm", at_batch=5):  # the kill comes as the at_batch-th training batch is drawn
        drawn = []

        def batch_or_kill(*args):
            drawn.append(args)
            if len(drawn) == at_batch:
                raise KeyboardInterrupt
            return reward_batch(*args)

        monkeypatch.setattr(train_prm, "reward_batch", batch_or_kill)
        with pytest.raises(KeyboardInterrupt):
            train_prm.main(flags(name, only=only))
        monkeypatch.setattr(train_prm, "reward_batch", reward_batch)

    train_prm.main(flags("whole"))
    kill("killed")
    assert torch.load(tmp_path / "killed" / "prm" / "prm_train.pt", weights_only=True)["step"] == 4
    train_prm.main(flags("killed", "--resume"))
    assert "prm train: resuming from step 4" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "killed" / "prm" / "prm_train.pt")  # the finished model replaces it
    whole, resumed = (load_checkpoint(str(tmp_path / name / "prm" / "ckpt.pt")) for name in ("whole", "killed"))
    assert resumed["loss_history"] == whole["loss_history"] and len(whole["loss_history"]) == 6
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])
    for name, other in (("problems", ["--problems", "5"]), ("lr", ["--lr", "0.5"])):
        kill(name)
        train_prm.main(flags(name, *other, "--resume"))
        assert "prm train: another run's (other solutions or settings): from step 0" in capsys.readouterr().out
    kill("both", only=None, at_batch=6 + 5)  # all three parts in one process, killed in the ORM's training
    train_prm.main(flags("both", "--resume", only=None))
    said = capsys.readouterr().out
    assert "is this run's, finished before the kill: kept" in said and "orm train: resuming from step 4" in said
