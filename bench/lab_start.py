"""How long a learner waits for ``Lab().start()``.

Three cases, each in a throwaway LABKIT_HOME (a participant's real lab state is never touched):

- warm: the CA is persisted and the kernel has started labs before (re-running a cell):
  median of 20 start/stop cycles, each with a new ``Lab``;
- cold, CA persisted: the first start in a fresh process (a new kernel), median of 5;
- cold, CA created: the very first start on a machine, which creates the lab CA, median of 5.

Cold runs happen in subprocesses, timing only ``Lab().start()`` (the import is reported apart).
Targets: < 0.3 s with a persisted CA, < 1 s when the CA is created. Prints a table, exits 0.

    .venv/bin/python bench/lab_start.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WARM_CYCLES = 20
COLD_RUNS = 5
TARGET_PERSISTED = 0.3
TARGET_CREATING = 1.0

CHILD = """
import json, time
t0 = time.perf_counter()
import labkit
t1 = time.perf_counter()
lab = labkit.Lab()
lab.start()
t2 = time.perf_counter()
status = lab.pki.status
lab.stop()
print(json.dumps({"import": t1 - t0, "start": t2 - t1, "status": status}))
"""


def cold_run(home: str) -> dict:
    env = dict(os.environ, LABKIT_HOME=home)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"a cold start failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm(home: str) -> tuple[list[float], list[float]]:
    os.environ["LABKIT_HOME"] = home
    import labkit

    labkit.Lab().start().stop()  # creates the CA and the labkit-loop thread: not measured
    starts, stops = [], []
    for _ in range(WARM_CYCLES):
        t0 = time.perf_counter()
        lab = labkit.Lab()
        lab.start()
        t1 = time.perf_counter()
        assert lab.pki.status == "loaded", lab.pki.status
        lab.stop()
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        stops.append(t2 - t1)
    return starts, stops


def row(name: str, values: list[float], target: float | None) -> str:
    med = statistics.median(values)
    verdict = "" if target is None else ("ok" if med < target else "OVER TARGET")
    tgt = "" if target is None else f"< {target:.1f} s"
    return (f"{name:34} {len(values):>3} {med * 1000:9.1f} {min(values) * 1000:9.1f} "
            f"{max(values) * 1000:9.1f}   {tgt:8} {verdict}")


def main() -> int:
    root = tempfile.mkdtemp(prefix="labkit-bench-start-")
    try:
        created, persisted = [], []
        for i in range(COLD_RUNS):
            home = os.path.join(root, f"fresh-{i}")
            r = cold_run(home)  # empty home: this run creates the CA
            assert r["status"] == "created", r
            created.append(r)
            r = cold_run(home)  # same home, new process: loads it
            assert r["status"] == "loaded", r
            persisted.append(r)
        starts, stops = warm(os.path.join(root, "warm"))

        print(f"labkit Lab().start() — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        print(f"{'case':34} {'n':>3} {'median ms':>9} {'min ms':>9} {'max ms':>9}   target")
        print(row("start, CA persisted (warm kernel)", starts, TARGET_PERSISTED))
        print(row("stop (warm kernel)", stops, None))
        print(row("start, CA persisted (new process)", [r["start"] for r in persisted],
                  TARGET_PERSISTED))
        print(row("start, CA created (new process)", [r["start"] for r in created],
                  TARGET_CREATING))
        print(row("import labkit (new process)", [r["import"] for r in created + persisted],
                  None))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
