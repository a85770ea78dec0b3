"""The lab's container image, built and tested on this machine (issue 16).

Builds the image from the root Dockerfile, then, inside it as the non-root user:
  1. `labkit doctor`, and `labkit tour` with every scenario as expected (the tour's time inside);
  2. JupyterLab as the README starts it, published on the host's loopback only, and a notebook of
     the working copy fetched over HTTP with the token it printed (and refused without it);
  3. the notebooks under nbval (`pytest notebooks`, the project's own nbval settings);
  4. with --seccomp PATH (Docker's default profile, moby's profiles/seccomp/default.json): doctor
     and the tour again under that profile, where Chromium cannot create its sandbox.
Prints the image size, the build times (cold with --cold; cached, and cached after an edit to
labkit) and the tour time inside. Takes minutes, so `make test` does not run it.

    CONTAINER_ENGINE=docker .venv/bin/python bench/container.py [--cold] [--seccomp FILE]

It runs only when CONTAINER_ENGINE names the engine (`docker` or `podman`), so that `make bench`
does not build a 3 GB image unasked; CONTAINER_BUILD_FLAGS and CONTAINER_RUN_FLAGS add flags.
The lab's build machine (no registry, crun unusable, a proxy CA; ../shared/CONTAINERS.md) needs:

    CONTAINER_ENGINE="podman --runtime runc --cgroup-manager=cgroupfs"
    CONTAINER_RUN_FLAGS="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
    CONTAINER_BUILD_FLAGS="$CONTAINER_RUN_FLAGS --network host
      -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
      --env PIP_CERT=/run/host-ca.crt --env NODE_EXTRA_CA_CERTS=/run/host-ca.crt
      --env npm_config_cafile=/run/host-ca.crt"
    CONTAINER_UNSETENV="PIP_CERT NODE_EXTRA_CA_CERTS npm_config_cafile"

podman's `--env` stays in the image it builds, and its `--unsetenv` also hides the variable from
the build's own steps; so the variables named in CONTAINER_UNSETENV are removed afterwards, in a
build of a `FROM` and a `LABEL` line (metadata only): the tested image's environment is the
Dockerfile's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = "localhost/labkit:bench"
NB_UID = "1000"
#: What a build never reads; mirrors .dockerignore, for the edited copy of the repository.
IGNORE = shutil.ignore_patterns(".git", ".venv", "node_modules", "workshop", "*.egg-info",
                                "__pycache__", ".ipynb_checkpoints", ".pytest_cache",
                                ".mypy_cache", ".ruff_cache", ".hypothesis", "results")


ENGINE = shlex.split(os.environ.get("CONTAINER_ENGINE", ""))
BUILD_FLAGS = shlex.split(os.environ.get("CONTAINER_BUILD_FLAGS", ""))
RUN_FLAGS = shlex.split(os.environ.get("CONTAINER_RUN_FLAGS", ""))


def sh(args: list[str], *, check: bool = True, timeout: float = 1800,
       log: Path | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if log is not None:
        log.write_text(r.stdout + r.stderr)
    if check and r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-25:])
        sys.exit(f"container bench: failed ({r.returncode}): {shlex.join(args)}\n{tail}")
    return r


UNSETENV = os.environ.get("CONTAINER_UNSETENV", "").split()


def build(context: Path, tag: str, *, cold: bool, log: Path) -> float:
    t0 = time.perf_counter()
    built = tag + "-env" if UNSETENV else tag
    sh([*ENGINE, "build", *BUILD_FLAGS, *(["--no-cache"] if cold else []), "-t", built,
        "-f", str(context / "Dockerfile"), str(context)], log=log)
    if UNSETENV:
        with tempfile.TemporaryDirectory(prefix="labkit-unsetenv-") as tmp:
            # A FROM line alone is only a new name for the same image: the LABEL makes a commit.
            (Path(tmp) / "Dockerfile").write_text(
                f"FROM {built}\nLABEL org.opencontainers.image.title=labkit\n")
            sh([*ENGINE, "build", *[f"--unsetenv={v}" for v in UNSETENV], "-t", tag, tmp])
    return time.perf_counter() - t0


def run(*cmd: str, extra: tuple[str, ...] = (), check: bool = True,
        timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return sh([*ENGINE, "run", "--rm", *RUN_FLAGS, *extra, TAG, *cmd], check=check,
              timeout=timeout)


def image_size(tag: str) -> int:
    out = sh([*ENGINE, "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip()
    return int(out)


def snapshot(into: Path) -> Path:
    """A copy of the repository as it is now, so that every build below sees the same files (a
    working tree being edited would make "cached, no change" rebuild)."""
    dst = into / "repo"
    shutil.copytree(ROOT, dst, ignore=IGNORE, symlinks=True)
    return dst


def edit(repo: Path) -> None:
    """One line of labkit changed: what a cached rebuild costs after an edit."""
    init = repo / "labkit" / "__init__.py"
    init.write_text(init.read_text() + f"\n# bench/container.py edit {uuid.uuid4().hex}\n")


def tour(extra: tuple[str, ...] = ()) -> tuple[int, int, float, str]:
    """(as expected, scenarios, seconds inside the container, browser) for `labkit tour --json`."""
    timer = ("import json, subprocess, sys, time; t = time.perf_counter(); "
             "r = subprocess.run(['labkit', 'tour', '--json'], capture_output=True, text=True); "
             "print(json.dumps({'rc': r.returncode, 'seconds': time.perf_counter() - t, "
             "'out': r.stdout, 'err': r.stderr[-3000:]}))")
    r = run("python", "-c", timer, extra=extra, check=False)
    try:
        wrapped = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        sys.exit(f"container bench: no tour ran:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    try:
        report = json.loads(wrapped["out"])
    except ValueError:
        print("  the tour printed no report: " + wrapped["err"].strip()[-600:])
        return 0, 0, wrapped["seconds"], "no browser"
    rows = report["scenarios"]
    ok = sum(1 for s in rows if s["ok"])
    for s in rows:
        if not s["ok"]:
            print(f"  MISMATCH {s['name']}: expected {s['expected']}, observed {s['observed']}"
                  f" ({s['reason']})")
    return ok, len(rows), wrapped["seconds"], report["browser"]


def fetch(url: str, token: str | None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def jupyterlab() -> dict[str, object]:
    """Start the image's default command as the README does and fetch a notebook with the token."""
    name = f"labkit-bench-{uuid.uuid4().hex[:8]}"
    # The README publishes on 127.0.0.1:8888; any free host port keeps the bench re-runnable.
    sh([*ENGINE, "run", "-d", "--name", name, *RUN_FLAGS, "-p", "127.0.0.1::8888", TAG])
    try:
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            logs = sh([*ENGINE, "logs", name], check=False)
            m = re.search(r"http://127\.0\.0\.1:8888/lab\?token=([0-9a-f]+)",
                          logs.stdout + logs.stderr)
            token = m.group(1) if m else None
            time.sleep(0.5)
        if token is None:
            sys.exit("container bench: JupyterLab printed no URL with a token in 120 s")
        published = sh([*ENGINE, "port", name, "8888"]).stdout.split()
        assert published and all(p.startswith("127.0.0.1:") for p in published), published
        base = f"http://{published[0]}"
        page = "00-start-here.ipynb"
        status, body = fetch(f"{base}/api/contents/{page}?content=1", token)
        nb = json.loads(body) if status == 200 else {}
        cells = len(nb.get("content", {}).get("cells", [])) if nb.get("type") == "notebook" else 0
        outputs = sum(len(c.get("outputs", [])) for c in nb.get("content", {}).get("cells", [])
                      if c.get("cell_type") == "code") if cells else -1
        refused, _ = fetch(f"{base}/api/contents/{page}", None)
        lab_status, _ = fetch(f"{base}/lab", token)
        return {"published": published, "notebook_status": status, "cells": cells,
                "outputs": outputs, "without_token": refused, "lab_page": lab_status}
    finally:
        sh([*ENGINE, "rm", "-f", name], check=False)


def nbval() -> tuple[int, str, float]:
    t0 = time.perf_counter()
    r = run("python", "-m", "pytest", "notebooks", "-p", "no:cacheprovider", "-q",
            check=False, timeout=3600)
    lines = r.stdout.strip().splitlines() or ["(no output)"]
    for line in lines:
        if line.startswith(("FAILED", "ERROR")):
            print("  " + line[:300])
    return r.returncode, lines[-1], time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="first build without any cache")
    ap.add_argument("--seccomp", type=Path, help="Docker's default seccomp profile (JSON)")
    ap.add_argument("--skip-nbval", action="store_true")
    args = ap.parse_args()
    if not ENGINE:
        # `make bench` runs every script here: this one only when asked (minutes, ~3 GB).
        print("container bench: skipped; CONTAINER_ENGINE=docker (or podman) builds and tests "
              "the image")
        return 0
    logs = Path(tempfile.mkdtemp(prefix="labkit-container-"))
    print(f"engine: {shlex.join(ENGINE)}   logs: {logs}", flush=True)

    with tempfile.TemporaryDirectory(prefix="labkit-context-") as tmp:
        repo = snapshot(Path(tmp))
        # Without --cold the first build reuses whatever cache there is: its time means little.
        first = build(repo, TAG, cold=args.cold, log=logs / "build-first.log")
        label = "cold (no cache):" if args.cold else "first (any cache):"
        print(f"build, {label:<24}{first:6.1f} s", flush=True)
        # Twice: after a --no-cache build, podman may first follow an older cached lineage of
        # the same early steps and miss later; the second run is the true "nothing changed".
        for _ in range(2):
            again = build(repo, TAG, cold=False, log=logs / "build-cached.log")
        print(f"build, cached (no change):     {again:6.1f} s", flush=True)
        edit(repo)
        edited = build(repo, TAG + "-edit", cold=False, log=logs / "build-edit.log")
        for leftover in (TAG + "-edit", TAG + "-edit-env"):
            sh([*ENGINE, "rmi", leftover], check=False)
        print(f"build, cached after an edit:   {edited:6.1f} s", flush=True)
    size = image_size(TAG)
    print(f"image size:                    {size / 1e9:6.2f} GB", flush=True)

    failures = []
    uid = run("id", "-u").stdout.strip()
    print(f"user inside:                   uid {uid}", flush=True)
    if uid != NB_UID:
        failures.append(f"runs as uid {uid}, not {NB_UID}")

    doctor = run("labkit", "doctor", check=False)
    print("labkit doctor inside:          " + ("ok" if doctor.returncode == 0 else "FAILED"))
    print("  " + "\n  ".join(doctor.stdout.strip().splitlines()), flush=True)
    if doctor.returncode != 0:
        failures.append("labkit doctor failed")

    ok, total, secs, browser = tour()
    print(f"labkit tour inside:            {ok}/{total} as expected in {secs:.1f} s ({browser})",
          flush=True)
    if total == 0 or ok != total:
        failures.append(f"tour {ok}/{total}")

    lab = jupyterlab()
    good = (lab["notebook_status"] == 200 and lab["cells"] and lab["outputs"] == 0
            and lab["without_token"] in (401, 403) and lab["lab_page"] == 200)
    print(f"JupyterLab:                    {'ok' if good else 'FAILED'}: published on "
          f"{lab['published']}; {lab['cells']} cells of the working copy over HTTP with the "
          f"token ({lab['outputs']} outputs), {lab['without_token']} without it", flush=True)
    if not good:
        failures.append(f"JupyterLab: {lab}")

    if not args.skip_nbval:
        rc, summary, nb_secs = nbval()
        print(f"notebooks under nbval inside:  {'ok' if rc == 0 else 'FAILED'}: {summary} "
              f"({nb_secs:.0f} s)", flush=True)
        if rc != 0:
            failures.append(f"nbval: {summary}")

    if args.seccomp:
        extra = ("--security-opt", f"seccomp={args.seccomp.resolve()}")
        d = run("labkit", "doctor", extra=extra, check=False)
        sandbox = [ln for ln in d.stdout.splitlines() if "sandbox" in ln.lower()]
        print(f"under {args.seccomp.name}:", flush=True)
        print("  doctor: " + ("ok" if d.returncode == 0 else "FAILED") + "; " + (
            sandbox[0].strip() if sandbox else "no sandbox line (labkit predates "
            "LABKIT_CHROMIUM_SANDBOX)"))
        if d.returncode != 0:
            failures.append(f"labkit doctor under {args.seccomp.name}")
        ok, total, secs, _ = tour(extra)
        print(f"  tour: {ok}/{total} as expected in {secs:.1f} s", flush=True)
        if total == 0 or ok != total:
            failures.append(f"tour under {args.seccomp.name}: {ok}/{total}")

    print("\n" + ("all as expected" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
