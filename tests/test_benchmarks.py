"""The benchmarks start as benchmarks/README.md says, and every figure there names the machine and day it was measured.

Nothing here runs a benchmark: they train and time for minutes, one at a time on an idle machine.
"""

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("throughput", "time_to_accuracy", "latency", "first_point", "torch_twin", "profile_step")
README = ROOT / "benchmarks" / "README.md"


@functools.cache
def _help(script: str) -> subprocess.CompletedProcess:
    # -X importtime lists every module imported, on stderr: --help must answer before TensorFlow is loaded.
    return subprocess.run([sys.executable, "-X", "importtime", f"benchmarks/{script}.py", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_help_runs_from_the_repository_root_without_tensorflow(script):
    done = _help(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")
    heavy = {m for m in _imported(done.stderr) if m.split(".")[0] in ("tensorflow", "keras")}
    assert not heavy, sorted(heavy)[:5]


@pytest.mark.parametrize("script", SCRIPTS)
def test_documented_commands_use_only_the_options_the_script_has(script):
    commands = re.findall(rf"python benchmarks/{script}\.py([^`\n]*)", README.read_text())
    assert commands, f"benchmarks/README.md does not say how to run {script}.py"
    options = set(re.findall(r"--[\w-]+", _help(script).stdout))
    for command in commands:
        assert set(re.findall(r"--[\w-]+", command)) <= options, command


def _figure_tables() -> list[tuple[list[str], list[list[str]]]]:
    """The Markdown tables of benchmarks/README.md that have a CPU column, as (header, rows) of stripped cells."""
    tables, lines = [], README.read_text().splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            header = [cell.strip().lower() for cell in line.strip().strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            if "cpu" in header:
                tables.append((header, rows))
    return tables


def test_one_table_holds_the_figures_each_with_its_cpu_and_date():
    tables = _figure_tables()
    assert len(tables) == 1
    header, rows = tables[0]
    assert rows
    cpu, date = header.index("cpu"), header.index("date")
    for row in rows:
        assert len(row) == len(header), row[0]
        assert row[cpu] and row[cpu] not in ("—", "-"), row[0]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row[date]), row[0]
