"""cifar_core.metrics: metrics.jsonl after a crash, records checked as they are read, thinned batch points, and the
truncation a resume makes."""

import json
import math

import pytest

from cifar_core import metrics


def test_nan_and_infinity_become_null(tmp_path):
    metrics.append_metrics(tmp_path, [{"kind": "batch", "epoch": 1, "loss": math.nan, "accuracy": math.inf}])
    line = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert metrics.read_metrics(tmp_path) == [{"kind": "batch", "epoch": 1, "step": 0, "time": None, "loss": None,
                                            "accuracy": None}]


def test_torn_metrics_line(tmp_path):
    first = [{"kind": "batch", "epoch": 1, "step": 1, "time": 0.5, "loss": 2.0},
             {"kind": "epoch", "epoch": 1, "step": 5, "time": 1.0}]
    metrics.append_metrics(tmp_path, first)
    with open(tmp_path / "metrics.jsonl", "ab") as f:
        f.write(b'{"kind": "batch", "epoch": 2, "st')  # the crash
    assert metrics.read_metrics(tmp_path) == first
    later = {"kind": "batch", "epoch": 2, "step": 1, "time": 1.5, "loss": 1.5}
    metrics.append_metrics(tmp_path, [later])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert lines[2] == '{"kind": "batch", "epoch": 2, "st'
    assert json.loads(lines[3]) == later
    assert metrics.read_metrics(tmp_path) == first + [later]


def test_garbled_and_non_object_lines_are_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(b'{"kind": "epoch", "epoch": 1}\n\xff\xfe\x00garbage\n3\n[1]\n\n'
                                             b'{"epoch": 2}\n{"kind": "epoch", "epoch": 2, "time": "late"}\n')
    assert metrics.read_metrics(tmp_path) == [{"kind": "epoch", "epoch": 1, "step": 0, "time": None},
                                           {"kind": "epoch", "epoch": 2, "step": 0, "time": None}]
    assert metrics.read_metrics(tmp_path / "nowhere") == []


def test_a_line_over_the_limit_is_skipped_as_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "MAX_LINE_BYTES", 100)
    epoch = b'{"kind": "epoch", "epoch": %d}\n'
    (tmp_path / "metrics.jsonl").write_bytes(epoch % 1 + b"[" + b"0," * 500 + b"0]\n" + epoch % 2 + b"x" * 250)
    assert [r["epoch"] for r in metrics.read_metrics(tmp_path)] == [1, 2]
    assert list(metrics._lines(open(tmp_path / "metrics.jsonl", "rb"))) == [epoch % 1, epoch % 2]


@pytest.mark.parametrize("record", [{"kind": "batch", "epoch": 0}, {"kind": "batch", "epoch": "1"},
                                    {"kind": "batch", "epoch": 1, "step": -1}, {"kind": "batch", "epoch": True},
                                    {"kind": "lap", "epoch": 1}, {"epoch": 1}])
def test_records_readers_cannot_rely_on_are_skipped(tmp_path, record):
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    assert metrics.read_metrics(tmp_path) == []


def test_metric_values_that_are_not_numbers_read_as_gaps(tmp_path):
    metrics.append_metrics(tmp_path, [{"kind": "epoch", "epoch": 1, "step": 3, "time": 2, "val_accuracy": "high"}])
    assert metrics.read_metrics(tmp_path) == [{"kind": "epoch", "epoch": 1, "step": 3, "time": 2.0,
                                            "val_accuracy": None}]


def test_non_finite_and_overflowing_numbers_written_by_hand_read_as_gaps(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 1, "step": 3, "time": NaN, '
                                            '"val_accuracy": Infinity, "loss": -Infinity, "n": 1' + "0" * 400 + '}\n')
    assert metrics.read_metrics(tmp_path) == [{"kind": "epoch", "epoch": 1, "step": 3, "time": None,
                                            "val_accuracy": None, "loss": None, "n": None}]


def test_batch_points_are_thinned_and_every_epoch_kept(tmp_path):
    records = [{"kind": "batch", "epoch": 1 + i // 100, "step": i % 100 + 1, "time": i} for i in range(1000)]
    records += [{"kind": "epoch", "epoch": e, "step": 100, "time": 100 * e} for e in range(1, 11)]
    metrics.append_metrics(tmp_path, records)
    read = metrics.read_metrics(tmp_path, max_batch_points=100)
    batches = [r for r in read if r["kind"] == "batch"]
    assert [r["epoch"] for r in read if r["kind"] == "epoch"] == list(range(1, 11))
    assert 50 <= len(batches) <= 100
    assert [r["time"] for r in batches] == sorted(r["time"] for r in batches)  # evenly spaced, in order


def test_truncate_metrics(tmp_path):
    records = [{"kind": k, "epoch": e, "step": 1, "time": float(e)} for e in (1, 2, 3) for k in ("batch", "epoch")]
    metrics.append_metrics(tmp_path, records)
    metrics.append_metrics(tmp_path, [records[1]])  # epoch 1 recorded twice (a resume that redid it)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"torn')
    kept = metrics.truncate_metrics(tmp_path, 2)
    assert kept == [records[1], records[3]]
    assert metrics.read_metrics(tmp_path) == records[:4]  # every completed epoch exactly once
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")


def test_best_val_accuracy_reads_the_epoch_records_only(tmp_path):
    assert metrics.best_val_accuracy(tmp_path) is None  # no metrics yet
    metrics.append_metrics(tmp_path, [
        {"kind": "batch", "epoch": 1, "step": 1, "time": 1.0, "val_accuracy": 0.9},
        {"kind": "epoch", "epoch": 1, "step": 2, "time": 2.0, "val_accuracy": 0.5},
        {"kind": "epoch", "epoch": 2, "step": 2, "time": 4.0, "val_accuracy": 0.7},
        {"kind": "epoch", "epoch": 3, "step": 2, "time": 6.0, "val_accuracy": None}])
    assert metrics.best_val_accuracy(tmp_path) == 0.7


def test_best_and_last_validation_accuracy(tmp_path):
    assert metrics.last_val_accuracy(tmp_path) is None and metrics.best_val_accuracy(tmp_path) is None
    metrics.append_metrics(tmp_path, [{"kind": "epoch", "epoch": e, "step": 1, "time": float(e), "val_accuracy": v}
                                      for e, v in ((1, 0.3), (2, 0.6), (3, 0.5))])
    assert (metrics.best_val_accuracy(tmp_path), metrics.last_val_accuracy(tmp_path)) == (0.6, 0.5)


def test_junk_lines_are_thinned_with_the_batch_points_and_a_files_reading_is_bounded(tmp_path, monkeypatch):
    # lines that never parse had all been parsed (20 MB of empty lines: 100 s), and a record kept every key
    batch = json.dumps({"kind": "batch", "epoch": 1, "step": 1, "loss": 1.0, **{f"k{i}": i for i in range(100)}})
    epoch = json.dumps({"kind": "epoch", "epoch": 1, "step": 1, "val_accuracy": 0.5})
    parsed = []
    parse = metrics._parse_line
    monkeypatch.setattr(metrics, "_parse_line", lambda line: parsed.append(line) or parse(line))
    (tmp_path / "metrics.jsonl").write_text("{}\n" * 10_000 + "\n" * 5_000 + batch + "\n" + epoch + "\n")
    records = metrics.read_metrics(tmp_path, max_batch_points=100)
    # the stride doubles each time the lines pass max_batch_points of it: 100 + 50 a doubling, 7 of them here
    assert len(parsed) <= 100 + 50 * 7 + 2
    assert [r["kind"] for r in records] == ["epoch"]  # the batch line fell between the strided ones
    assert len(metrics.clean_record(json.loads(batch))) == metrics.MAX_RECORD_KEYS
    monkeypatch.setattr(metrics, "MAX_METRICS_LINES", 100)  # nothing past it is read
    (tmp_path / "metrics.jsonl").write_text("{}\n" * 100 + epoch + "\n")
    assert metrics.read_metrics(tmp_path / ".", max_batch_points=10) == []


def test_a_metrics_file_that_is_a_folder_or_a_link_cannot_be_read(tmp_path):
    assert metrics.file_problem(tmp_path) is None  # no file yet: a run not started
    (tmp_path / "metrics.jsonl").write_text('{"torn')
    assert metrics.file_problem(tmp_path) is None  # a torn line is skipped, not a problem of the file
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "metrics.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    assert metrics.file_problem(tmp_path) == "its metrics.jsonl is not a regular file."
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "metrics.jsonl").mkdir()
    assert metrics.file_problem(tmp_path) == "its metrics.jsonl is not a regular file."


def test_values_that_cannot_be_what_their_name_says_read_as_gaps(tmp_path):
    # an accuracy of 7.5 had been shown as 750%, a time of -5 s as the training time (the sixth attack)
    (tmp_path / "metrics.jsonl").write_text(json.dumps(
        {"kind": "epoch", "epoch": 1, "step": 3, "time": -5, "val_accuracy": 7.5, "accuracy": -0.1, "loss": -2,
         "val_loss": 0.0, "learning_rate": -1e-3, "top_3_accuracy": 1.0, "low_res_switch": -4}) + "\n")
    assert metrics.read_metrics(tmp_path) == [{"kind": "epoch", "epoch": 1, "step": 3, "time": None,
                                            "val_accuracy": None, "accuracy": None, "loss": None, "val_loss": 0.0,
                                            "learning_rate": None, "top_3_accuracy": 1.0, "low_res_switch": -4.0}]
    assert metrics.in_range("time", 1e308) is None and metrics.in_range("time", 3600.0) == 3600.0
