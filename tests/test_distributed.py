"""--strategy mirrored on a CPU-only machine (two logical CPU replicas) and --strategy multiworker (two worker
processes on 127.0.0.1 driven by TF_CONFIG), each training `tiny` for one epoch into the usual run directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import helpers
import numpy as np

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


def test_multiworker_with_two_local_workers(tmp_path):
    workers = [f"127.0.0.1:{helpers.free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        processes.append(subprocess.Popen(_train_command(tmp_path / f"worker{index}", "multiworker"), cwd=ROOT,
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-2000:]
    for index in range(2):
        _check_finished_run(tmp_path / f"worker{index}", replicas=2)
    # one training, not two: each worker took 512 / (32 x 2) = 8 steps on its half, and the gradients were shared
    status = json.loads((tmp_path / "worker0" / "status.json").read_text())
    assert status["steps_per_epoch"] == 8
    import keras

    weights = [keras.saving.load_model(tmp_path / f"worker{i}" / "model.keras").get_weights() for i in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_multiworker_without_tf_config_is_refused_with_a_sentence(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(_train_command(tmp_path / "run", "multiworker"), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "TF_CONFIG" in result.stderr and "Traceback" not in result.stderr
