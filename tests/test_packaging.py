"""The two installation routes agree, and the façade stays small and inert."""

from __future__ import annotations

import gc
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import labkit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _normalize(requirement: str) -> str:
    """``Name_x >= 1.0`` -> ``name-x>=1.0`` (PEP 503 name, no spaces), so specs compare exactly."""
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", requirement)
    assert m, f"cannot read requirement {requirement!r}"
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    return name + re.sub(r"\s+", "", m.group(2))


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_normalize(r) for r in reqs}


def environment_pip_list(text: str) -> list[str]:
    """The entries under ``dependencies: - pip:`` of a conda environment.yml, without PyYAML
    (it is not a labkit dependency). Handles the plain block style conda files use."""
    entries: list[str] = []
    pip_indent: int | None = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if pip_indent is None:
            if re.fullmatch(r"-\s*pip:", item):
                pip_indent = indent
            continue
        if indent <= pip_indent:
            break  # the pip block ended
        assert item.startswith("- "), f"unexpected line in the pip list: {raw!r}"
        entry = item[2:].strip()
        if len(entry) > 1 and entry[0] == entry[-1] and entry[0] in "'\"":
            entry = entry[1:-1]  # a quoted YAML scalar; quotes inside (markers) are kept
        entries.append(entry)
    return entries


ENV = (ROOT / "environment.yml").read_text()


def test_the_line_parser_reads_a_pip_block() -> None:
    sample = "name: x\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - a>=1  # c\n" \
             "      - B_c >= 2\n  - nodejs\n"
    assert environment_pip_list(sample) == ["a>=1", "B_c >= 2"]


def test_the_line_parser_agrees_with_yaml_when_available() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(ENV)
    pips = [d["pip"] for d in doc["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pips and environment_pip_list(ENV) == pips[0]


def test_environment_yml_pip_list_matches_pyproject() -> None:
    entries = environment_pip_list(ENV)
    assert "-e ." in entries, "the conda route must install labkit itself"
    listed = [_normalize(e) for e in entries if not e.startswith("-")]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    wanted = pyproject_requirements()
    assert set(listed) - wanted == set(), "in environment.yml but not in pyproject.toml"
    assert wanted - set(listed) == set(), "in pyproject.toml but not in environment.yml"


def test_environment_python_satisfies_requires_python() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    m = re.search(r"^\s*-\s*python\s*=\s*(\d+)\.(\d+)", ENV, re.M)
    assert m, "environment.yml pins no python"
    low = re.match(r">=\s*(\d+)\.(\d+)", project["requires-python"])
    assert low
    assert (int(m[1]), int(m[2])) >= (int(low[1]), int(low[2]))


PINNED_ALL = [
    "STORY_ROUTES",
    "AssetMissingError",
    "Browser",
    "BrowserDriverError",
    "BrowserMissingError",
    "BrowserStartError",
    "CAFileMissingError",
    "CorsPolicy",
    "Firefox",
    "FirefoxProtocolError",
    "GuessError",
    "InvalidOriginError",
    "Lab",
    "LabError",
    "LabNotRunningError",
    "LabPKI",
    "NginxMissingError",
    "NginxStartError",
    "Observation",
    "Page",
    "PortInUseError",
    "Route",
    "Service",
    "Topology",
    "TopologyError",
    "UnknownHostError",
    "UnknownScenarioError",
    "UnsafeFolderError",
    "UpstreamAddressError",
    "UpstreamCAMissingError",
    "VisitInterruptedError",
    "__version__",
    "capture",
    "compare",
    "diagram",
    "doctor",
    "exercise",
    "explain",
    "guesses",
    "messenger",
    "reset",
    "run",
    "scenario",
    "stop_all",
    "tour",
    "triage",
]


def test_the_facade_is_pinned() -> None:
    # Changing the public API is a decision: update this list in the same commit.
    assert labkit.__all__ == PINNED_ALL
    for name in labkit.__all__:
        assert hasattr(labkit, name), name


def test_every_error_is_a_lab_error() -> None:
    errors = [getattr(labkit, n) for n in labkit.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, labkit.LabError) for e in errors)


def _lab_errors() -> set[type]:
    """Every subclass of LabError labkit defines, found by importing each of its modules."""
    for mod in pkgutil.walk_packages(labkit.__path__, "labkit."):
        if not mod.name.endswith("__main__"):  # importing it would run the CLI
            importlib.import_module(mod.name)
    found: set[type] = set()
    todo = [labkit.LabError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found and sub.__module__.startswith("labkit"):
                found.add(sub)
                todo.append(sub)
    return found


def test_every_lab_error_lives_in_labkit_errors_and_is_exported() -> None:
    # One hierarchy: `except labkit.LabError` catches every failure labkit explains, and each one
    # can be caught by name from the façade, without knowing which floor raises it.
    found = _lab_errors()
    assert len(found) >= 15, sorted(e.__name__ for e in found)
    for error in found:
        name = error.__name__
        assert error.__module__ == "labkit.errors", f"{name} is defined in {error.__module__}"
        assert name in labkit.__all__ and getattr(labkit, name) is error, f"{name} not exported"


def test_the_error_walk_finds_an_error_defined_elsewhere() -> None:
    """The twin: an error class defined outside labkit.errors is found, and named."""
    rogue = type("RogueError", (labkit.LabError,), {"__module__": "labkit.serve.rogue"})
    try:
        assert rogue in _lab_errors()
        assert rogue.__module__ != "labkit.errors" and "RogueError" not in labkit.__all__
    finally:
        del rogue
        gc.collect()  # __subclasses__ holds weak references: the class must not outlive the test


def test_importing_labkit_starts_nothing() -> None:
    code = (
        "import json, threading, os\n"
        "import labkit\n"
        "print(json.dumps({'count': threading.active_count(),\n"
        "                  'names': [t.name for t in threading.enumerate()],\n"
        "                  'loop': __import__('labkit.runtime').runtime._loop is not None}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["count"] == 1, state["names"]
    assert "labkit-loop" not in state["names"]
    assert state["loop"] is False
