"""The engine's layout: imports go one way (no circle, hidden function-level imports included), no Streamlit in the
engine, no TensorFlow in the pages, and the Keras code the Build page gives runs outside this clone."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cifar_core import builder, presets

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "cifar_core"


def imports_of(path: Path) -> set[str]:
    """The cifar_core modules a file imports, at module level or inside any function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.module and node.module.startswith("cifar_core"):
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("cifar_core.")}
    modules = {p.stem for p in ENGINE.glob("*.py")}
    return (found & modules) - {path.stem}


def engine_graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in ENGINE.glob("*.py") if p.stem != "__main__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_engine_has_no_import_circle():
    cycle = find_cycle(engine_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_bottom_modules_import_nothing_above_them():
    graph = engine_graph()
    assert graph["files"] == graph["device"] == graph["spec"] == set()
    assert graph["images"] <= {"files"}  # files.open_regular: an image path may name a pipe or a device
    assert graph["shapes"] <= {"spec"}
    assert graph["spec_io"] <= {"files", "spec", "shapes"}  # files.parse_json, the one bounded JSON reader
    assert graph["config"] <= {"spec"}
    assert graph["readers"] <= {"files", "images"} and graph["data"] <= {"files", "readers", "images"}
    assert graph["locks"] <= {"files"}  # files.touch: a lock file that is a link is refused
    assert graph["runs"] <= {"files", "locks", "spec", "shapes", "spec_io", "config", "metrics"}
    assert graph["metrics"] <= {"files"} and graph["space"] <= {"files", "spec", "shapes", "config", "presets"}
    assert graph["studies"] <= {"runs", "space"}  # reading a study needs no worker, no queue, no jobs
    assert graph["standby"] <= {"files", "jobs", "locks", "runs", "train"}  # it imports train to have it loaded
    assert graph["resizing"] <= {"metrics", "shapes", "spec", "config", "builder"}
    assert graph["estimate"] <= {"metrics", "resizing", "runs", "shapes", "spec_io", "spec", "config"}
    assert graph["flags"] <= {"config", "files", "presets", "runs", "spec", "spec_io"}  # no training to read flags
    assert graph["progress"] <= {"metrics", "runs"}  # a status file's figures: no process, no queue


def test_every_engine_module_has_its_own_test_file():
    # the command line (__main__) is tests/test_cli.py's
    untested = [p.stem for p in ENGINE.glob("*.py") if p.stem not in ("__init__", "__main__")
                and not (ROOT / "tests" / f"test_{p.stem}.py").is_file()]
    assert untested == []


def test_the_engine_imports_no_streamlit_and_the_pages_no_tensorflow():
    for path in ENGINE.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in names if m.split(".")[0] in ("streamlit", "ui")}, path.name
    for path in [ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")]:
        tree = ast.parse(path.read_text())
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        assert not top & {"tensorflow", "keras"}, path.name


def streamlit_number_inputs(path: Path) -> list[int]:
    """Lines of a file that call Streamlit's number_input themselves (st.number_input, a column's .number_input)."""
    tree = ast.parse(path.read_text())
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "number_input" and not (isinstance(n.func.value, ast.Name) and n.func.value.id == "ui")]


def test_every_number_box_goes_through_ui_number_input(tmp_path):
    """Streamlit's own bounds keep a typed value outside them on screen while the page uses the last value inside
    them (a trial count of 0 started 10 trials): every number box is ui.number_input's, which has none."""
    calls = {p.name: streamlit_number_inputs(p) for p in [ROOT / "app.py", *(ROOT / "ui").glob("*.py"),
                                                           *(ROOT / "pages").glob("*.py")]}
    assert len(calls.pop("__init__.py")) == 1  # ui.number_input's own
    assert not {name: lines for name, lines in calls.items() if lines}
    bad = tmp_path / "page.py"
    bad.write_text("import streamlit as st\nc = st.columns(2)\nc[0].number_input('Trials', 1, 10)\n")
    assert streamlit_number_inputs(bad) == [3]


def test_no_ui_module_is_named_like_a_name_of_the_ui_package():
    """Importing ui/<name>.py sets the package's attribute <name> to that module: a module named like a name that
    ui/__init__.py imports or defines (runs, data, device, ...) would replace it under the shared helpers' feet."""
    tree = ast.parse((ROOT / "ui" / "__init__.py").read_text())
    # a submodule imported as itself (from ui import drafts) is that very attribute, not a name it would replace
    names = {(a.asname or a.name).split(".")[0] for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
             and not (isinstance(n, ast.ImportFrom) and n.module == "ui") for a in n.names}
    names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert {"runs", "files", "sources", "kept_uploads"} <= names
    assert not {p.stem for p in (ROOT / "ui").glob("*.py")} & names


def run_elsewhere(code: str, tmp_path, forbid_project: bool = False) -> subprocess.CompletedProcess:
    """Python in a fresh process from another folder, with only what is installed; forbid_project makes any import
    of cifar_core fail."""
    guard = "import sys; sys.modules['cifar_core'] = None\n" if forbid_project else ""
    script = tmp_path / "model_code.py"
    script.write_text(guard + code)
    return subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("name, forbid_project", [("tiny", True), ("report-2-1", True), ("fast-small", False)])
def test_the_build_pages_keras_code_runs_in_a_fresh_python(name, forbid_project, tmp_path):
    code = builder.to_keras_source(presets.PRESETS[name].spec) + textwrap.dedent("""
        print("params", model.count_params())
    """)
    done = run_elsewhere(code, tmp_path, forbid_project)
    assert done.returncode == 0, done.stderr[-2000:]
    from cifar_core import shapes
    assert f"params {shapes.summary(presets.PRESETS[name].spec)['params']}" in done.stdout


def test_the_wheel_carries_the_model_the_sample_and_the_console_script(tmp_path):
    """`pip install .` gives a package that works from any folder: the shipped model and sample are package data."""
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy of the tracked files: setuptools writes build/ beside what it builds
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        if name.startswith(("cifar_core/", "pyproject.toml", "README.md")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"cifar_core/assets/sample.npz", "cifar_core/assets/default/model.keras",
            "cifar_core/assets/default/config.json", "cifar_core/__main__.py"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cifar-studio = cifar_core.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_cli_runs_from_another_folder(tmp_path):
    done = subprocess.run([sys.executable, "-I", "-m", "cifar_core", "presets", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and '"name": "tiny"' in done.stdout, done.stderr
