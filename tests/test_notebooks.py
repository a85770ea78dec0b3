"""The workshop notebooks are committed executed, by the labkit under test, and shaped as lessons.
(nbval, run by `make test` on notebooks/, then re-runs every cell and compares the outputs.)"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkit.notebook.nbtools import fingerprint

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


def test_out_of_order_twice_and_after_restart_in_a_real_kernel() -> None:
    """A participant's worst day: cells out of order, twice, after a kernel restart. Each gives a
    working lab or one clear line — never a hang or a traceback into labkit's internals."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [
        "import labkit\nlab = labkit.Lab(labkit.messenger(name='ooo'))",
        "lab.visit()",  # before start: a clear error
        "lab.start(); lab.start(); print(lab.running)",  # twice: fine
        "lab.stop(); lab.stop(); print(lab.running)",
        "lab = labkit.Lab(labkit.messenger(name='ooo')).start()\n"
        "lab = labkit.Lab(labkit.messenger(name='ooo')).start()\nprint(lab.running)",
        "labkit.run('no-such-scenario')",
        "labkit.reset()",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True)
    client.execute()
    outs = [c.outputs for c in nb.cells]
    err = outs[1][0]
    assert err.output_type == "error" and err.ename == "LabNotRunningError"
    assert len(err.traceback) == 1 and "Call lab.start() first" in err.traceback[0]
    assert outs[2][0].text.strip() == "True"
    assert outs[3][0].text.strip() == "False"
    assert outs[4][0].text.strip() == "True"
    err = outs[5][0]
    assert err.ename == "UnknownScenarioError" and len(err.traceback) == 1
    assert "Known scenarios: cors-port-mismatch" in err.traceback[0]
    # ...and after a kernel restart, the same first cells work again.
    client = NotebookClient(new_notebook(cells=[new_code_cell(cells[0]),
                                                new_code_cell("lab.start(); print(lab.running)"),
                                                new_code_cell("labkit.reset()")]),
                            timeout=120, kernel_name="python3")
    again = client.execute()
    assert again.cells[1].outputs[0].text.strip() == "True"
