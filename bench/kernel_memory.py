"""Resident memory of a real Jupyter kernel running the lab (target: < 120 MB with the lab up).

Starts an ipykernel with jupyter_client, as JupyterLab would, in a throwaway LABKIT_HOME; runs
what the first notebook cell runs; reads the kernel's RSS (children included) with psutil after
each step; shuts the kernel down cleanly. Prints a table, exits 0.

    .venv/bin/python bench/kernel_memory.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import KernelManager

TARGET_MB = 120.0
TIMEOUT = 60

STEPS: list[tuple[str, str]] = [
    ("kernel ready, before import labkit", "pass"),
    ("after import labkit", "import labkit"),
    ("after lab = labkit.Lab().start()", "lab = labkit.Lab().start()"),
    ("after 2 HTTPS requests to the lab", (
        "import urllib.request\n"
        "_ctx = lab.pki.client_context()\n"
        "for _u in (lab.url('web', '/'), lab.url('api', '/api/hello')):\n"
        "    with urllib.request.urlopen(_u, context=_ctx, timeout=10) as _r:\n"
        "        assert _r.status == 200, _r.status\n"
    )),
]
LAB_UP = "after lab = labkit.Lab().start()"


def kernel_manager(scratch: Path) -> tuple[KernelManager, str]:
    """The venv's ``python3`` kernelspec; else a throwaway one that runs this very interpreter."""
    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec("python3")
        if Path(spec.resource_dir).resolve().is_relative_to(Path(sys.prefix).resolve()):
            # argv[0] "python" is replaced by sys.executable, i.e. this venv's interpreter
            return KernelManager(kernel_name="python3", kernel_spec_manager=ksm), "python3 (venv)"
    except NoSuchKernel:
        pass
    kdir = scratch / "kernels" / "labkit-bench"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "labkit bench", "language": "python",
    }))
    ksm = KernelSpecManager(kernel_dirs=[str(scratch / "kernels")])
    return KernelManager(kernel_name="labkit-bench", kernel_spec_manager=ksm), "throwaway spec"


def execute(kc: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["header"]["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=hook, store_history=False)
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"the kernel failed on:\n{code}\n{''.join(out)}")
    return "".join(out)


def rss_mb(proc: psutil.Process) -> tuple[float, int]:
    procs = [proc] + proc.children(recursive=True)
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20, len(procs)


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="labkit-bench-kernel-"))
    os.environ["LABKIT_HOME"] = str(scratch / "home")  # inherited by the kernel
    km, which = kernel_manager(scratch)
    km.start_kernel()
    kc = km.client()
    rows: list[tuple[str, float, int]] = []
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        pid = int(execute(kc, "import os; print(os.getpid())").strip())
        proc = psutil.Process(pid)
        for label, code in STEPS:
            execute(kc, code)
            rows.append((label, *rss_mb(proc)))
        execute(kc, "lab.stop()")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"labkit in a real Jupyter kernel ({which}, pid {pid}) — RSS including child processes")
    print(f"{'step':40} {'RSS MB':>8} {'procs':>5}")
    for label, mb, n in rows:
        note = ""
        if label == LAB_UP:
            note = f"  target < {TARGET_MB:.0f} MB: " + ("ok" if mb < TARGET_MB else "OVER TARGET")
        print(f"{label:40} {mb:8.1f} {n:5d}{note}")
    before = rows[0][1]
    up = dict((r[0], r[1]) for r in rows)[LAB_UP]
    print(f"{'labkit cost (lab up - before import)':40} {up - before:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
