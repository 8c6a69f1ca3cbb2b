"""Packaging: each install extra declares every third-party import its code can reach, and declares nothing unused.

The import lists are built from the source with `ast` (module-level and function-level imports alike), following
`psp_hub` imports from each extra's entry points, so `pip install ".[app]"` / `".[train]"` in a fresh environment
has what the pipeline / the trainer import; no real environment is built here (too slow for a test).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Entry points of each install: the base package, the Space + CLI + pipeline, and the trainer + evaluation.
ENTRIES = {
    "base": ["psp_hub/__init__.py"],
    "app": ["app.py", "psp_hub/cli.py", "psp_hub/pipeline/__init__.py"],
    "train": ["train/train.py", "train/build_dataset.py", "psp_hub/training/__init__.py", "psp_hub/evaluate.py"],
}
# Import names whose distribution the environment cannot tell (wheels that install a bare extension module).
DISTRIBUTION_OF = {"dlib": "dlib-bin", "cv2": "opencv-python-headless", "yaml": "pyyaml", "PIL": "pillow"}
# Declared for what they do at run time without being imported by name.
RUNTIME_ONLY = {"tensorboard", "onnxscript"}  # accelerate's log_with="tensorboard"; torch.onnx.export(dynamo=True)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


def module_file(module: str) -> Path | None:
    """The source file of a psp_hub module (package __init__ or module file)."""
    base = REPO / Path(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(third-party top-level names, psp_hub modules) imported anywhere in one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import submodule`
    own = {n for n in names if n.split(".")[0] == "psp_hub" and module_file(n)}
    third = {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"psp_hub", "__future__", ""}
    return third, own


def reachable_imports(entries: list[str]) -> dict[str, set[str]]:
    """Third-party import name -> the files that import it, over every psp_hub module reachable from `entries`."""
    todo, seen, found = [REPO / e for e in entries], set(), {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        third, own = imports_of(path)
        for name in third:
            found.setdefault(name, set()).add(str(path.relative_to(REPO)))
        for module in own:
            todo.append(module_file(module))
            parent = module.rsplit(".", 1)[0]
            if module_file(parent):  # importing a submodule runs its package's __init__ too
                todo.append(module_file(parent))
    return found


@functools.cache
def installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions(import_name: str) -> set[str]:
    """The distributions (normalised) that provide an import name in this environment."""
    known = installed().get(import_name, [])
    names = {normalise(d) for d in known}
    if import_name in DISTRIBUTION_OF:
        names.add(normalise(DISTRIBUTION_OF[import_name]))
    return names


def declared(extra: str) -> set[str]:
    reqs = PYPROJECT["dependencies"] + (PYPROJECT["optional-dependencies"][extra] if extra != "base" else [])
    return {requirement_name(r) for r in reqs}


@pytest.mark.parametrize("extra", ["base", "app", "train"])
def test_every_reachable_import_is_declared_in_the_extra(extra):
    found = reachable_imports(ENTRIES[extra])
    assert "torch" in found and ("gradio" in found) == (extra == "app")
    missing = {name: sorted(files)[:3] for name, files in found.items() if not distributions(name) & declared(extra)}
    assert missing == {}, f"imported by the {extra} code but not declared for `pip install .[{extra}]`: {missing}"


@pytest.mark.parametrize("extra", ["app", "train"])
def test_no_silent_extra(extra):
    """Every requirement an extra declares is imported by that extra's code (or is a named run-time-only one)."""
    used = set().union(*(distributions(name) for name in reachable_imports(ENTRIES[extra])))
    unused = {requirement_name(r) for r in PYPROJECT["optional-dependencies"][extra]} - used - RUNTIME_ONLY
    assert unused == set(), f"declared in [{extra}] but never imported there: {unused}"


def test_the_import_walk_sees_function_level_and_relative_imports(tmp_path):
    third, own = imports_of(REPO / "psp_hub" / "__init__.py")  # `from .models import ...`
    assert "psp_hub.models" in own
    third, _ = imports_of(REPO / "psp_hub" / "cli.py")  # tqdm is imported inside functions only
    assert "tqdm" in third


def import_graph() -> dict[str, set[str]]:
    """psp_hub's top-level units (subpackages and top modules) -> the other units their files import."""
    graph: dict[str, set[str]] = {}
    for path in sorted((REPO / "psp_hub").rglob("*.py")):
        unit = path.relative_to(REPO / "psp_hub").parts[0].removesuffix(".py")
        _, own = imports_of(path)
        graph.setdefault(unit, set()).update(m.split(".")[1] for m in own if m.count(".") and m.split(".")[1] != unit)
    return graph


def test_common_is_the_bottom_layer():
    """psp_hub.common imports no other part of psp_hub, so every subpackage may import it without a cycle."""
    graph = import_graph()
    assert {"paths", "imageio", "images", "geometry", "config"} <= {p.stem for p in (REPO / "psp_hub/common").glob("*")}
    assert graph["common"] == set()
    assert {"data", "face", "pipeline", "metrics", "video", "evaluation"} <= {
        u for u, deps in graph.items() if "common" in deps
    }


def test_imports_flow_one_way_between_subpackages():
    """No two parts of psp_hub import each other, directly or round a loop (a topological order exists)."""
    graph, order = import_graph(), []
    while len(order) < len(graph):
        ready = sorted(u for u, deps in graph.items() if u not in order and deps <= set(order))
        assert ready, f"an import cycle among {sorted(set(graph) - set(order))}"
        order += ready
    assert order.index("common") < order.index("pipeline") < order.index("video") < order.index("cli")
    assert order.index("onnx") < order.index("export_onnx") and order.index("evaluation") < order.index("evaluate")


def test_the_entry_modules_only_start_their_subpackages_main():
    """`python -m psp_hub.evaluate / export_onnx / benchmark` are documented commands: one import and the guard."""
    for name, target in [("evaluate", "evaluation"), ("export_onnx", "onnx"), ("benchmark", "benchmarking")]:
        tree = ast.parse((REPO / "psp_hub" / f"{name}.py").read_text())
        kinds = [type(node).__name__ for node in tree.body]
        assert kinds == ["Expr", "ImportFrom", "If"], (name, kinds)  # docstring, `from ... import main`, guard
        assert tree.body[1].module.startswith(f"psp_hub.{target}.") and tree.body[1].names[0].name == "main"


def test_requirements_pin_every_declared_dependency():
    """requirements.txt (the pinned environment) covers the base install and both extras."""
    pinned = {
        requirement_name(line)
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    every = declared("app") | declared("train")
    assert every - pinned == set()


def test_license_is_an_spdx_expression():
    assert PYPROJECT["license"] == "Apache-2.0"  # a TOML table here makes setuptools warn on every build


def make_dry_run(target: str) -> str:
    proc = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_targets_for_the_fast_lane_and_lint():
    assert '-m "not slow and not browser"' in make_dry_run("test-fast")
    lint = make_dry_run("lint")
    assert "ruff check ." in lint and "ruff format --check ." in lint
    test = make_dry_run("test")
    assert "ruff check ." in test and test.index("ruff format --check .") < test.index("pytest")  # lint first


@pytest.mark.parametrize("uid,expected", [("0", "apt-get install -y -qq chromium"), ("1000", "sudo env")])
def test_make_browser_installs_chromium_with_or_without_root(tmp_path, uid, expected):
    """With no chromium on PATH, `make browser` says what it installs and uses sudo only when not root."""
    calls = tmp_path / "calls.txt"
    for tool, body in [("id", f"echo {uid}"), ("apt-get", ""), ("sudo", ""), ("env", "")]:
        script = tmp_path / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n{body}\n')
        script.chmod(0o755)
    make = shutil.which("make")
    proc = subprocess.run(
        [make, "-s", "browser"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "installing Debian's chromium package with apt-get" in proc.stdout
    logged = calls.read_text()
    assert expected in logged and "chromium" in logged
    assert ("sudo" in logged) == (uid != "0")
