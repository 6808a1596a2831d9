"""metrics.jsonl, the run's curve: one JSON record a line, appended by its job, read by everybody else.

    {"kind": "batch" | "epoch", "epoch": 1-based, "step", "time": seconds since the start, then Keras's logs:
     loss, accuracy, and on epoch records val_loss, val_accuracy, learning_rate}

Records are checked as they are read (kind, epoch >= 1, step >= 0, numbers or None: a torn, garbled or hostile line
is skipped or shows as a gap), and the file is streamed, every epoch record kept and the batch points thinned, so
that a file of any size is read in bounded memory, once while it is unchanged.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
from pathlib import Path

from .files import DiskFullError, dumps, is_disk_full, open_for_append, open_regular, write_atomic

MAX_EPOCH_RECORDS = 10_000
MAX_LINE_BYTES = 64 * 2**10  # a record is a few hundred bytes; a longer line is garbage and is skipped
MAX_BATCH_POINTS = 4_000  # per run, for the curves: more points than a chart's width in pixels
# A run writes a batch point every half second, about 0.9 MB (7,200 lines) an hour: 512 MB and 4 million lines are
# three weeks of training. Past them the file is not read further (20 MB of empty lines had taken 100 s, every line
# parsed; skipped and thinned now, 4 million such lines take a few seconds, once per version of the file).
MAX_METRICS_BYTES = 512 * 2**20
MAX_METRICS_LINES = 4_000_000
MAX_RECORD_KEYS = 32  # a record has about ten; 6,000 keys a line had taken a gigabyte over a thousand lines


def number(value):
    """A finite number as a float, else None: json.loads reads NaN and Infinity, which no chart or table can show
    and strict JSON cannot carry on."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        value = float(value)  # an integer of 400 digits does not fit a float
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


MAX_TIME_S = 10**9  # 31 years: a record's time past it (1e308 had printed as a 309-digit training time) is garbage


def in_range(key: str, value):
    """A record's value when it can be what its name says, else None (a gap): an accuracy is a share of 0..1, and a
    time, a loss or a learning rate is never negative. A record's val_accuracy of 7.5 had been shown as 750%, and a
    time of -5 s as the training time (the sixth attack)."""
    if value is None:
        return None
    if key.endswith("accuracy"):
        return value if 0 <= value <= 1 else None
    if key == "time":
        return value if 0 <= value <= MAX_TIME_S else None
    if key.endswith("loss") or key == "learning_rate":
        return value if value >= 0 else None
    return value


def count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else 0


def clean_record(record) -> dict | None:
    """A metrics record as readers may rely on it (kind, epoch >= 1, step >= 0, numbers or None), or None."""
    if not isinstance(record, dict) or record.get("kind") not in ("batch", "epoch"):
        return None
    epoch, step = record.get("epoch"), record.get("step", 0)
    if count(epoch) < 1 or (step is not None and not count(step) and step != 0):
        return None
    clean = {"kind": record["kind"], "epoch": epoch, "step": count(step),
             "time": in_range("time", number(record.get("time")))}
    for key, value in record.items():
        if len(clean) >= MAX_RECORD_KEYS:
            break
        if key not in clean and isinstance(key, str) and len(key) <= 64:
            clean[key] = in_range(key, number(value))
    return clean


def _lines(f):
    """The file's lines, each read at most MAX_LINE_BYTES at a time: an over-long line (a file of one endless line)
    is skipped as it is read, never held whole; empty lines are skipped, and no line past MAX_METRICS_LINES or
    MAX_METRICS_BYTES is read."""
    for _ in range(MAX_METRICS_LINES):
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line or f.tell() > MAX_METRICS_BYTES:
            return
        if not line.strip():  # an empty line: nothing to parse
            continue
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass


def _parse_line(line: bytes):
    try:
        return clean_record(json.loads(line))
    except (ValueError, RecursionError):
        return None


@functools.lru_cache(maxsize=64)
def _read_metrics_cached(path: str, size: int, mtime_ns: int, max_batch_points: int) -> tuple:
    """Every epoch record and at most max_batch_points evenly spaced batch records, streaming through the file: a
    gigabyte of metrics costs seconds once, not gigabytes of memory, and is cached while the file is unchanged."""
    epochs, batches, stride, seen = collections.deque(maxlen=MAX_EPOCH_RECORDS), [], 1, 0
    try:
        with open_regular(path) as f:
            for line in _lines(f):
                if b'"kind": "epoch"' in line or b'"kind":"epoch"' in line:
                    record = _parse_line(line)
                else:  # a batch point: only every stride-th line is parsed at all, whether it parses or not
                    seen += 1
                    if seen > max_batch_points * stride:
                        batches, stride = batches[::2], stride * 2
                    if (seen - 1) % stride:
                        continue
                    record = _parse_line(line)
                if record is None:
                    continue
                if record["kind"] == "epoch":
                    epochs.append(record)
                else:
                    batches.append(record)
    except OSError:
        pass
    # A batch point with the epoch records, in order of (epoch, step): the file's own order.
    merged = sorted([*epochs, *batches], key=lambda r: (r["epoch"], r["kind"] == "epoch", r["step"]))
    return tuple(merged)


def read_metrics(run_dir: Path, max_batch_points: int = MAX_BATCH_POINTS) -> list[dict]:
    """The run's records, checked and bounded: every epoch record, batch records thinned to max_batch_points; a
    torn or garbled line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        st = path.stat()
    except OSError:
        return []
    return [dict(r) for r in _read_metrics_cached(str(path), st.st_size, st.st_mtime_ns, max_batch_points)]


def file_problem(run_dir: Path) -> str | None:
    """Why metrics.jsonl cannot be read at all (a link, a folder), as a sentence, or None; a torn or junk line is
    skipped, not a problem of the file."""
    path = Path(run_dir) / "metrics.jsonl"
    return "its metrics.jsonl is not a regular file." if path.is_symlink() or path.exists() and not path.is_file() \
        else None


def epoch_records(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["kind"] == "epoch"]


def best_val_accuracy(run_dir: Path) -> float | None:
    """The highest validation accuracy any epoch record holds; None before the first one."""
    return max((r["val_accuracy"] for r in epoch_records(run_dir) if r.get("val_accuracy") is not None),
               default=None)


def last_val_accuracy(run_dir: Path) -> float | None:
    """The last epoch's validation accuracy: the saved model's (Evaluate measures it), not the best epoch's."""
    records = epoch_records(run_dir)
    return records[-1].get("val_accuracy") if records else None


def append_metrics(run_dir: Path, records: list[dict]) -> None:
    path = Path(run_dir) / "metrics.jsonl"
    text = "".join(dumps(r, indent=None) + "\n" for r in records)
    try:
        with open(open_for_append(path, readable=True), "a+b") as f:  # never through a link
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn last line from a crash: start the next record on its own line
                    text = "\n" + text
            f.write(text.encode())
    except OSError as e:  # a partly written line is a torn line: readers skip it, the next append starts anew
        if is_disk_full(e):
            raise DiskFullError(path) from e
        raise


def truncate_metrics(run_dir: Path, last_epoch: int) -> list[dict]:
    """Keeps the records of completed epochs up to last_epoch, each epoch's record once (used on resume, so that
    every completed epoch appears exactly once); returns the epoch records kept. Streamed through
    files.write_atomic, so a kill midway leaves the old file."""
    path = Path(run_dir) / "metrics.jsonl"
    kept, seen = [], set()

    def write(tmp):
        with open(tmp, "wb") as out:
            if not path.exists():
                return
            with open_regular(path) as source:
                for line in _lines(source):
                    record = _parse_line(line)
                    if not record or record["epoch"] > last_epoch:
                        continue
                    if record["kind"] == "epoch":
                        if record["epoch"] in seen:
                            continue
                        seen.add(record["epoch"])
                        kept.append(record)
                    out.write((dumps(record, indent=None) + "\n").encode())

    write_atomic(path, write=write)
    return kept
