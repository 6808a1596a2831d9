"""cifar_core.files: atomic writes, bounded strict JSON, leftovers, a full disk, regular files read without a link."""

import errno
import json
import math
import os
import threading
import time

import pytest

from cifar_core import files


def test_write_json_round_trip(tmp_path):
    files.write_json(tmp_path / "a.json", {"x": [1, 2.5, "s"], "y": None})
    assert files.read_json(tmp_path / "a.json") == {"x": [1, 2.5, "s"], "y": None}
    assert files.read_json(tmp_path / "missing.json", {"d": 1}) == {"d": 1}
    (tmp_path / "torn.json").write_text('{"x": ')
    assert files.read_json(tmp_path / "torn.json", "default") == "default"


def test_nan_and_infinity_are_written_as_null(tmp_path):
    files.write_json(tmp_path / "a.json", {"loss": math.nan, "xs": [math.inf, -math.inf, 1.5]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"loss": None, "xs": [None, None, 1.5]}


@pytest.mark.parametrize("error", [OSError("broken pipe"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "status.json"
    files.write_json(path, {"state": "running", "epoch": 3})
    before = path.read_bytes()

    def failing(tmp):
        tmp.write_text('{"state": "fin')  # half written, then the failure
        raise error

    with pytest.raises(type(error)):
        files.write_atomic(path, write=failing)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_full_disk_is_one_sentence(tmp_path):
    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.DiskFullError) as info:
        files.write_atomic(tmp_path / "model.keras", write=full, suffix=".tmp.keras")
    assert str(info.value).startswith("The disk is full: model.keras could not be written")
    assert info.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())
    assert files.is_disk_full(RuntimeError("Unable to write: No space left on device"))  # HDF5's way of saying it
    assert not files.is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_temporary_names_are_unique_to_each_writer(tmp_path):
    names = {files.temporary_name(tmp_path / "a.npz", ".tmp.npz") for _ in range(100)}
    assert len(names) == 100 and all(n.name.startswith(".a.npz.") and n.name.endswith(".tmp.npz") for n in names)


def test_many_writers_of_one_file_never_collide(tmp_path):
    errors = []

    def write(i):
        try:
            for _ in range(20):
                files.write_json(tmp_path / "shared.json", {"writer": i})
        except Exception as e:  # noqa: BLE001 - any failure is the test's failure
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and files.read_json(tmp_path / "shared.json")["writer"] in range(4)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_clear_leftovers_removes_only_hidden_temporaries(tmp_path):
    for name in (".model.keras.123-abcd.tmp.keras", ".status.json.9-ff.tmp", ".x.npz.1-2.tmp.npz", "model.keras",
                 "notes.tmp", ".hidden"):
        (tmp_path / name).write_text("x")
    assert sorted(files.clear_leftovers(tmp_path)) == [".model.keras.123-abcd.tmp.keras", ".status.json.9-ff.tmp",
                                                       ".x.npz.1-2.tmp.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "model.keras", "notes.tmp"]


@pytest.mark.parametrize("text, reason", [
    ('{"a": 1, "a": 2}', "appears twice"),
    ("[" * 40 + "]" * 40, "nests more than 32"),
    ('{"n": ' + "9" * 5000 + "}", "more than 100 digits"),
    ('{"x": NaN}', "not a JSON number"),
    ('{"x": ', "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_parse_json_refuses_with_a_sentence(text, reason):
    with pytest.raises(files.JSONFileError, match=reason):
        files.parse_json(text)


def test_parse_json_reads_a_byte_order_mark_as_windows_editors_write_it():
    assert files.parse_json(b"\xef\xbb\xbf" + b'{"epochs": 2}') == {"epochs": 2}


def test_parse_json_limits_size_and_keeps_brackets_in_strings():
    assert files.parse_json('{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == {"s": "[" * 42}
    with pytest.raises(files.JSONFileError, match="limit is 10"):
        files.parse_json("[" + "1," * 10 + "1]", max_bytes=10)


def test_read_json_skips_a_file_over_the_limit(tmp_path):
    (tmp_path / "big.json").write_text("[" + "0," * 1000 + "0]")
    assert files.read_json(tmp_path / "big.json", "too big", max_bytes=100) == "too big"


def test_only_regular_files_are_read_and_never_past_the_limit(tmp_path):
    (tmp_path / "a.json").write_text('{"a": 1}')
    (tmp_path / "link.json").symlink_to(tmp_path / "a.json")  # read through only when the caller says so
    assert files.read_bytes(tmp_path / "link.json", 8, follow_links=True) == b'{"a": 1}'
    with pytest.raises(OSError, match="link.json is a link, which is not followed"):
        files.read_bytes(tmp_path / "link.json", 8)
    assert files.read_json(tmp_path / "link.json", "unread") == "unread"
    assert files.is_regular(tmp_path / "a.json") and not files.is_regular(tmp_path / "link.json")
    with pytest.raises(OSError, match="larger than 7 bytes"):
        files.read_bytes(tmp_path / "a.json", 7)
    assert files.read_tail(tmp_path / "a.json", 3) == b" 1}" and files.read_tail(tmp_path / "a.json", 99) == b'{"a": 1}'
    os.mkfifo(tmp_path / "pipe.json")  # open() would wait for a writer forever
    (tmp_path / "zero.json").symlink_to("/dev/zero")  # read() would never end
    (tmp_path / "folder.json").mkdir()
    for name in ("pipe.json", "zero.json", "folder.json"):
        with pytest.raises(OSError, match="not a regular file"):
            files.open_regular(tmp_path / name, follow_links=True)
        assert not files.is_regular(tmp_path / name)
        with pytest.raises(OSError, match="not a regular file|is a link"):
            files.read_tail(tmp_path / name, 10)
        assert files.read_json(tmp_path / name, "unread") == "unread"


def test_nesting_is_measured_in_one_pass_even_for_an_unterminated_string():
    # a regular expression that had to find a closing quote retried from every later one: 15 s for 64 kB
    started = time.perf_counter()
    with pytest.raises(files.JSONFileError, match="not valid JSON"):
        files.parse_json('"' + '\\\\"' * 200_000)
    assert time.perf_counter() - started < 2
    with pytest.raises(files.JSONFileError, match="not valid JSON"):  # brackets in a string are no nesting
        files.parse_json('"' + "[" * 100)
    with pytest.raises(files.JSONFileError, match="nests more than 32 levels"):
        files.parse_json('{"a": "]]]]", "b": ' + "[" * 33 + "]" * 33 + "}")
    assert files.parse_json('{"a": "x\\"[[[", "b": [[1]]}') == {"a": 'x"[[[', "b": [[1]]}
