"""python -m cifar_core: the CLI contract of DESIGN.md (presets, predict, evaluate, runs), in a subprocess where the
exact stdout and exit status matter, in this process otherwise."""

import json
import shutil

import helpers
import numpy as np
import pytest

from cifar_core import runs, shapes
from cifar_core.__main__ import main
from cifar_core.presets import PRESETS


def test_presets_json():
    result = helpers.run_cli("presets", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list(PRESETS) and len(rows) == 5
    assert {r["name"]: r["params"] for r in rows} == {n: shapes.summary(p.spec)["params"] for n, p in PRESETS.items()}
    assert {r["name"]: r["params"] for r in rows}["report-2-2"] == 15_579_550
    assert all(r["why"] for r in rows)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    good = folder / "good.png"
    good.write_bytes(helpers.image_bytes(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)))
    bad = folder / "bad.jpg"
    bad.write_bytes(b"this is not a picture")
    return good, bad


def test_predict_json_good_and_bad(images):
    good, bad = images
    model = helpers.tiny_run() / "model.keras"
    result = helpers.run_cli("predict", model, good, bad, "--top-k", "4", "--json")
    assert result.returncode == 1, result.stderr  # some image failed
    entries = json.loads(result.stdout)  # stdout is exactly the JSON list
    assert [e["file"] for e in entries] == [str(good), str(bad)]
    top = entries[0]["top"]
    assert set(entries[0]) == {"file", "top"} and len(top) == 4
    assert {t["label"] for t in top} <= set(runs_class_names())
    probabilities = [t["probability"] for t in top]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    assert set(entries[1]) == {"file", "error"}
    assert entries[1]["error"].endswith(".") and "supported format" in entries[1]["error"]


def runs_class_names():
    return json.loads((helpers.tiny_run() / "config.json").read_text())["class_names"]


def test_predict_all_good_exits_zero(images, capsys):
    good, _ = images
    assert main(["predict", str(helpers.tiny_run()), str(good), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 1 and len(entries[0]["top"]) == 3


def test_predict_refuses_a_top_k_below_one(images, capsys):
    for k in ("0", "-5"):
        assert main(["predict", "default", str(images[0]), "--top-k", k]) == 2
        assert "--top-k must be at least 1" in capsys.readouterr().err


def test_predict_missing_file(images, capsys):
    good, _ = images
    assert main(["predict", str(helpers.tiny_run() / "model.keras"), str(good), "/nonexistent/x.png", "--json"]) == 1
    captured = capsys.readouterr()
    entries = json.loads(captured.out)
    assert "top" in entries[0] and entries[1] == {"file": "/nonexistent/x.png", "error": "There is no such file."}
    assert captured.err == ""  # one sentence, in the JSON, not a second one beside it


def test_predict_refuses_a_remote_model(images, capsys):
    good, _ = images
    assert main(["predict", "hf://someone/model", str(good), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a local model" in err and err.count("\n") == 1


def test_evaluate_json_on_the_sample():
    run = helpers.tiny_run()
    result = helpers.run_cli("evaluate", run / "model.keras", "--data", "sample", "--split", "test", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["split"] == "test" and out["n"] == 1000  # the sample's own test split
    assert {"accuracy", "loss", "n", "split", "confusion_matrix", "per_class"} <= set(out)
    assert "predictions" not in out and "model_sha256" not in out
    cm = np.array(out["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 1000
    assert out["accuracy"] == pytest.approx(np.trace(cm) / 1000)
    assert [r["class"] for r in out["per_class"]] == runs_class_names()
    assert [r["support"] for r in out["per_class"]] == cm.sum(axis=1).tolist()
    assert out["loss"] > 0
    # the same model and data as the evaluation the training stored
    stored = json.loads((run / "eval.json").read_text())["sample:test"]
    assert out["accuracy"] == pytest.approx(stored["accuracy"], abs=0.011)


def test_evaluate_text_names_the_split_and_shows_progress(tmp_path, capsys):
    run = shutil.copytree(helpers.tiny_run(), tmp_path / "run")
    (run / "eval.json").unlink()  # predict for real
    assert main(["evaluate", str(run), "--data", "sample", "--split", "val"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("val split: accuracy ") and "on 200 images" in captured.out
    progress = [line for line in captured.err.splitlines() if line.startswith("Predicting: ")]
    assert progress and progress[-1] == "Predicting: 100%"  # piped: a line per step, not a bar


def test_offline_with_no_source_named_evaluate_falls_back_to_the_sample_and_says_so(monkeypatch, capsys, tmp_path):
    from cifar_core import data

    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(data, "can_download", lambda: False)
    assert main(["evaluate", str(helpers.tiny_run() / "model.keras"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["source"] == "sample"
    assert captured.err.splitlines()[0] == data.resolve_default_source()[1]  # one line on stderr says so


def test_an_explicit_keras_source_that_cannot_be_had_is_one_line(monkeypatch, capsys):
    import keras

    from cifar_core import data

    def offline():
        print("Downloading data from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")  # as Keras does
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.setattr(data, "can_download", lambda: False)
    assert main(["evaluate", str(helpers.tiny_run() / "model.keras"), "--data", "keras", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # Keras's own line went to stderr, before the one sentence
    assert captured.err.splitlines()[0].startswith("Downloading data from") and captured.err.count("\n") == 2
    assert "could not be downloaded (no network connection)" in captured.err.splitlines()[1]


def test_runs_json(tmp_path, capsys):
    shutil.copytree(helpers.tiny_run(), tmp_path / "runs" / "r1")
    assert main(["runs", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["run_id"] == "r1" and rows[0]["state"] == "finished"
    assert rows[0]["id"] == "r1"  # DESIGN.md's name for it
    assert rows[0]["epochs_done"] == 1 and rows[0]["has_model"] is True and rows[0]["params"] == 5418


def test_resume_may_repeat_the_runs_settings_but_not_change_them(tmp_path, capsys):
    run = tmp_path / "r1"
    shutil.copytree(helpers.tiny_run(), run)
    runs.write_status(run, state="stopped")
    saved = runs.read_spec_and_config(run)[1]
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "50", "--preset", "fast"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the model fast" in err and "epochs 50 (the run has 1)" in err
    assert main(["train", "--run-dir", str(run), "--resume", "--learning-rate", "99"]) == 2
    assert "learning_rate must be a number in (0, 10], got 99.0" in capsys.readouterr().err  # checked, too
    assert main(["train", "--run-dir", str(run), "--resume", "--learning-rate", "0.5"]) == 2
    assert "learning_rate 0.5 (the run has 0.003)" in capsys.readouterr().err
    assert runs.read_status(run)["state"] == "stopped"  # refused before anything was touched
    runs.write_status(run, state="finished")
    same = ["--preset", "tiny", "--epochs", str(saved.epochs), "--limit", str(saved.limit)]  # --data left out
    assert main(["train", "--run-dir", str(run), "--resume", *same]) == 0  # the same command line, --resume added
    out = capsys.readouterr().out
    assert "has finished; there is nothing to resume" in out and out.strip().splitlines()[-1] == str(run)
    (tmp_path / "a-file").write_text("x")
    assert main(["train", "--run-dir", str(tmp_path / "a-file"), "--resume"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_unknown_preset_is_one_line(capsys, tmp_path):
    assert main(["train", "--preset", "huge", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown preset 'huge'" in err and "tiny" in err
    assert not (tmp_path / "runs").exists()


def test_json_output_is_the_json_alone_whatever_else_prints_meanwhile(monkeypatch, capsys):
    """Keras prints its download's progress to stdout: with --json it goes to stderr, and stdout parses."""
    from cifar_core import evaluate

    def noisy(*args, **kwargs):
        print("Downloading data from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
        return {"accuracy": 0.5, "top3_accuracy": 1.0, "loss": float("nan"), "n": 2, "split": "test",
                "confusion_matrix": [[1, 0], [1, 0]], "per_class": [], "predictions": [0, 0]}

    monkeypatch.setattr(evaluate, "evaluate_model", noisy)
    assert main(["evaluate", "default", "--data", "sample", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "NaN" not in out  # a diverged model's loss: JSON has no NaN, so null
    assert json.loads(out) == {"accuracy": 0.5, "top3_accuracy": 1.0, "loss": None, "n": 2, "split": "test",
                               "confusion_matrix": [[1, 0], [1, 0]], "per_class": []}
    assert "Downloading data from" in err
    assert main(["evaluate", "default", "--data", "sample"]) == 0  # without --json, stdout is the terminal's
    assert capsys.readouterr().out.startswith("Downloading data from")


def test_every_command_and_flag_says_what_it_is():
    from cifar_core import flags

    commands = next(a for a in flags.parser()._actions if a.dest == "command").choices
    assert set(commands) == {"train", "sweep", "sweep-worker", "evaluate", "predict", "saliency", "standby",
                             "presets", "runs"}
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, (name, action.dest)


@pytest.mark.parametrize("argv, words", [
    (["runs", "--runs-dir", "{tmp}/a-file", "--json"], "is not a folder"),
    (["train", "--preset", "tiny", "--run-dir", "{tmp}/my run"], "--run-dir's folder name must be"),
    (["train", "--run-dir", "{tmp}/nothing-here"], "does not exist; give --preset or --spec"),
    (["train", "--preset", "tiny", "--data", "{tmp}/no-data", "--queue", "--runs-dir", "{tmp}/runs"],
     "The data source '{tmp}/no-data' does not exist"),
    (["sweep", "--preset", "tiny", "--trials", "2", "--data", "{tmp}/no-data", "--runs-dir", "{tmp}/runs", "--json"],
     "The data source '{tmp}/no-data' does not exist"),
    (["train", "--preset", "tiny", "--minutes", "1", "--epochs", "3", "--runs-dir", "{tmp}/runs"],
     "Give --epochs or --minutes, not both"),
])
def test_a_mistake_is_refused_at_once_in_one_sentence_and_nothing_is_made(argv, words, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and words.replace("{tmp}", str(tmp_path)) in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run, no study
    assert not (tmp_path / "nothing-here").exists() and not (tmp_path / "my run").exists()


def test_an_offline_keras_source_is_refused_before_a_run_is_queued(monkeypatch, tmp_path, capsys):
    from cifar_core import data

    monkeypatch.setattr(data, "keras_downloaded", lambda: None)
    monkeypatch.setattr(data, "can_download", lambda: False)
    assert main(["train", "--preset", "tiny", "--data", "keras", "--queue", "--runs-dir", str(tmp_path)]) == 2
    assert "CIFAR-10 could not be downloaded (no network connection)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_run_to_resume_keeps_whatever_folder_name_it_has(tmp_path, capsys):
    run = tmp_path / "old.run"  # a name no new run may take, made by hand or by an older version
    shutil.copytree(helpers.tiny_run(), run)
    runs.write_status(run, state="finished")
    assert main(["train", "--run-dir", str(run), "--resume"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run)


def test_a_sweep_on_a_source_that_exists_but_cannot_be_read_is_one_sentence(tmp_path, capsys):
    (tmp_path / "notdata.txt").write_text("x")
    for name in ("cat", "dog"):
        (tmp_path / "empty" / "train" / name).mkdir(parents=True)  # class folders without images
    for source, words in ((tmp_path / "notdata.txt", "is neither a cifar-10-batches-py folder"),
                          (tmp_path / "empty", "hold no images")):
        argv = ["sweep", "--preset", "tiny", "--trials", "2", "--data", str(source), "--runs-dir", str(tmp_path / "r")]
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and words in err, err  # not a traceback from every trial
    assert not (tmp_path / "r").exists()


def test_a_runs_folder_that_is_a_loop_of_links_is_one_sentence(tmp_path, capsys):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for json_flag in ([], ["--json"]):  # the text view had died on resolve()
        assert main(["runs", "--runs-dir", str(tmp_path / "loop"), *json_flag]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"error: The runs folder {tmp_path / 'loop'} is not a folder.\n"


def test_a_ctrl_c_no_command_handles_is_a_sentence(monkeypatch, capsys):
    from cifar_core import __main__ as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "presets", interrupted)
    assert main(["presets"]) == 130
    assert capsys.readouterr().err == "error: interrupted.\n"  # not a traceback
