"""--strategy mirrored on a CPU-only machine (two logical CPU replicas, training `tiny` for one epoch into the
usual run directory), and multiworker's clear refusal while Keras 3 cannot fit under it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _train_command(run_dir: Path, strategy: str) -> list[str]:
    return [sys.executable, "-m", "cifar_core", "train", "--preset", "tiny", "--data", "sample", "--epochs", "1",
            "--limit", "512", "--batch-size", "32", "--strategy", strategy, "--run-dir", str(run_dir)]


def _check_finished_run(run_dir: Path, replicas: int) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["replicas"] == replicas
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    assert [r["epoch"] for r in epochs] == [1] and epochs[0]["val_accuracy"] is not None
    assert (run_dir / "model.keras").stat().st_size > 0


def test_mirrored_over_two_logical_cpus(tmp_path):
    env = {**os.environ, "CIFAR_CORE_VIRTUAL_CPUS": "2"}
    result = subprocess.run(_train_command(tmp_path / "run", "mirrored"), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    _check_finished_run(tmp_path / "run", replicas=2)


def test_multiworker_is_refused_with_a_sentence(tmp_path):
    result = subprocess.run(_train_command(tmp_path / "run", "multiworker"), cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "multiworker" in result.stderr and "Traceback" not in result.stderr
