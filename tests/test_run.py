"""run.sh, the README's main command: the whole pipeline end to end (the test preset), then again
with every stage skipped because its outputs are current."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["prepare", "sft", "prm", "orm", "prm (evaluation)", "rl", "search (sft policy)", "sft (width 16)", "prepare (self-correction traces)",
          "sft (self-correction, width 16)", "search (width 16)", "search (rl policy)"]


def run_sh(out, seed=0):
    env = dict(os.environ, PRESET="test", OUT=str(out), PYTHON=sys.executable, SEED=str(seed))
    result = subprocess.run(["bash", "run.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stdout.replace("\r", "\n").splitlines() if line.startswith("run.sh: ")]


@pytest.mark.slow
def test_run_sh_runs_every_stage_once_and_skips_them_when_current(tmp_path):
    first = run_sh(tmp_path)
    for stage in STAGES:
        assert sum(line.startswith(f"run.sh: {stage} done in ") for line in first) == 1, (stage, first)
    report = (tmp_path / "report.md").read_text()
    assert report.split("\n\n")[1] == "## The o1 phenomena, judged"  # the verdict table comes first
    assert "## The verifiers, head to head" in report and "## Self-correction" in report
    assert "| d | pass@1 (greedy) | change | maj@8 | change | pass@8 | change | maj@16 | change | pass@16 | change |" in report
    times = (tmp_path / "run_times.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in times][-1] == "the whole pipeline" and len(times) == len(STAGES) + 1
    assert "| prm |" in report.split("## Where the time goes")[1]
    second = run_sh(tmp_path)
    for stage in STAGES:
        assert sum(line.startswith(f"run.sh: {stage} is up to date") for line in second) == 1, (stage, second)
    assert not any(" done in " in line for line in second)


@pytest.mark.slow
def test_another_seed_runs_into_its_own_directory_and_the_report_judges_both(tmp_path):
    run_sh(tmp_path / "run")
    lines = run_sh(tmp_path / "run", seed=1)
    assert lines[0].startswith(f"run.sh: preset test, seed 1, outputs in {tmp_path}/run_seed1")
    other = (tmp_path / "run_seed1" / "data" / "test.jsonl").read_text()
    assert other != (tmp_path / "run" / "data" / "test.jsonl").read_text()  # other problems
    for out in ("run", "run_seed1"):  # both reports have a verdict column per seed and one over both
        report = (tmp_path / out / "report.md").read_text()
        assert "verdict (run) | verdict (run_seed1) | all seeds |" in report
