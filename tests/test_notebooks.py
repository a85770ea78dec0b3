"""The workshop notebooks are committed executed, by the labkit under test, and shaped as lessons.
(nbval, run by `make test` on notebooks/, then re-runs every cell and compares the outputs.)"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkit.nbtools import fingerprint

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ["00-start-here", "01-websocket-basics", "02-cors-across-ports", "03-ws-vs-wss",
            "04-reverse-proxy", "05-short-term-fix", "06-exercises"]


def test_the_sequence_is_complete_and_numbered() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    for p in NOTEBOOKS:
        assert re.fullmatch(r"\d\d-[a-z0-9-]+", p.stem)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs_from_this_labkit(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code cells teaches nothing runnable"
    unrun = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not unrun, f"cells {unrun} were never executed: run `make notebooks`"
    assert any(c.outputs for c in code), "committed without outputs: run `make notebooks`"
    stamp = nb.metadata.get("labkit", {}).get("fingerprint")
    assert stamp == fingerprint(), (
        f"{path.name} holds outputs from another labkit ({stamp} != {fingerprint()}): "
        f"run `make notebooks` and commit the result")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_shaped_as_a_lesson(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first, last = nb.cells[0].source, nb.cells[-1].source
    assert first.startswith("# ") and "**Time:**" in first and "**Objectives**" in first
    assert last.startswith("## Key points")
    for c in nb.cells:
        if c.cell_type == "code":
            # Thin notebooks: machinery belongs in labkit, not in cells.
            assert len(c.source.splitlines()) <= 12, c.source
