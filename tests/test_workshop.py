"""The participants' working copy: `make lab` opens copies of the reference notebooks with no
stored answers, never overwrites a participant's work, and can reset one notebook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from labkit.notebook.nbtools import main, workshop_copy

REFERENCE = Path(__file__).resolve().parent.parent / "notebooks"


def _outputs(path: Path) -> int:
    nb = json.loads(path.read_text())
    return sum(len(c.get("outputs", [])) for c in nb["cells"] if c["cell_type"] == "code")


def test_copies_have_no_stored_answers(tmp_path: Path) -> None:
    written = workshop_copy(REFERENCE, tmp_path / "workshop")
    assert {p.name for p in written} == {p.name for p in REFERENCE.glob("*.ipynb")}
    assert all(_outputs(REFERENCE / p.name) > 0 for p in written)  # the reference keeps them
    assert all(_outputs(p) == 0 for p in written)
    nb = json.loads(written[0].read_text())
    assert all(c.get("execution_count") is None for c in nb["cells"] if c["cell_type"] == "code")


def test_a_participants_work_survives_and_one_notebook_resets(tmp_path: Path) -> None:
    work = tmp_path / "workshop"
    workshop_copy(REFERENCE, work)
    mine = sorted(work.glob("*.ipynb"))
    mine[0].write_text(mine[0].read_text().replace('"cells"', '"cells"', 1) + " ")  # edited
    mine[1].write_text(mine[1].read_text() + " ")
    assert workshop_copy(REFERENCE, work) == []  # nothing overwritten
    number = mine[1].name.split("-")[0]
    assert main(["--workshop", str(REFERENCE), str(work), number]) == 0
    assert mine[0].read_text().endswith(" ")  # untouched
    assert not mine[1].read_text().endswith(" ")  # fresh again
    shutil.rmtree(work)
    assert main(["--workshop", str(REFERENCE)]) == 2  # a usage line, not a traceback
