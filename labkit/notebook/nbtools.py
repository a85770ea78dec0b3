"""Keeping the workshop notebooks honest: execute them in a fresh kernel and stamp them with the
fingerprint of the labkit that produced their outputs. A test refuses notebooks whose stamp is
stale, so stored outputs always come from the labkit under test.

    python -m labkit.notebook.nbtools notebooks/*.ipynb      # what `make notebooks` runs
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


def main(argv: list[str]) -> int:
    for arg in argv:
        seconds = execute(Path(arg))
        print(f"executed {arg} in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
