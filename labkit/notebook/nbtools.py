"""Keeping the workshop notebooks honest: execute them in a fresh kernel and stamp them with the
fingerprint of the labkit that produced their outputs. A test refuses notebooks whose stamp is
stale, so stored outputs always come from the labkit under test.

    python -m labkit.notebook.nbtools notebooks/*.ipynb      # what `make notebooks` runs
    python -m labkit.notebook.nbtools --workshop notebooks workshop [NAME...]   # `make lab`

The tracked notebooks are the reference (outputs stored, checked by nbval). Participants work
on copies in an untracked folder, outputs cleared so no answer shows before they run a cell.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # the whole labkit package


def fingerprint() -> str:
    """SHA-256 over labkit's source and static files (names and contents), first 16 hex digits."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".js", ".html", ".css") \
                and "__pycache__" not in path.parts and path.name != "nbtools.py":
            h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def execute(path: Path, timeout: int = 600) -> float:
    """Run a notebook top to bottom in a fresh kernel, store its outputs and the stamp."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata["labkit"] = {"fingerprint": fingerprint()}
    nbformat.write(nb, path)
    return time.perf_counter() - started


def blank(nb: object) -> object:
    """The notebook with every output and execution count cleared (metadata kept)."""
    for cell in nb.cells:  # type: ignore[attr-defined]
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def workshop_copy(reference: Path, work: Path, reset: tuple[str, ...] = ()) -> list[Path]:
    """Copy each reference notebook into ``work`` with outputs cleared — only where the copy is
    missing (a participant's work is never overwritten), or named in ``reset`` (by file name or
    its number, e.g. "02"). Returns the copies written."""
    import nbformat

    work.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(reference.glob("*.ipynb")):
        dst = work / src.name
        again = any(src.name == r or src.name.startswith(r + "-") or src.stem == r
                    for r in reset)
        if dst.exists() and not again:
            continue
        nbformat.write(blank(nbformat.read(src, as_version=4)), dst)
        written.append(dst)
    return written


def main(argv: list[str]) -> int:
    if argv[:1] == ["--workshop"]:
        if len(argv) < 3:
            print("usage: nbtools --workshop REFERENCE_DIR WORK_DIR [NOTEBOOK...]",
                  file=sys.stderr)
            return 2
        for dst in workshop_copy(Path(argv[1]), Path(argv[2]), tuple(argv[3:])):
            print(f"fresh copy: {dst}", flush=True)
        return 0
    for arg in argv:
        seconds = execute(Path(arg))
        print(f"executed {arg} in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
