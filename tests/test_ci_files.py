"""The files that build and check the lab elsewhere: the container image (Dockerfile), the CI
workflow, the dev container. Checked offline and in milliseconds; bench/container.py builds the
image and tests it for real (minutes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import system

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    lines = [ln for ln in dockerfile.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text())


def args_of(name: str) -> list[str]:
    return [a for i, a in DOCKERFILE if i == name]


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with a schema it ships: no network (the vendored copy is used)."""
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema,
                           str(path)], capture_output=True, text=True, timeout=60)


# -- the workflow -------------------------------------------------------------------------------
def test_there_is_a_workflow() -> None:
    assert WORKFLOWS, "no .github/workflows/*.yml"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
@pytest.mark.parametrize("schema", ["vendor.github-workflows",
                                    "custom.github-workflows-require-timeout"])
def test_workflow_matches_the_schema(path: Path, schema: str) -> None:
    r = check_jsonschema(schema, path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    # The twin of the test above: a misspelt key (`step:`) must fail, or the check proves nothing.
    good = WORKFLOWS[0].read_text()
    assert "    steps:\n" in good
    bad = tmp_path / "bad.yml"
    bad.write_text(good.replace("    steps:\n", "    step:\n", 1))
    r = check_jsonschema("vendor.github-workflows", bad)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "is not valid" in r.stdout


def test_ci_runs_make_test_inside_the_image() -> None:
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert re.search(r"docker run\b[^\n]*\bmake test\b", text), \
        "CI should run `make test` inside the lab's image (docker run ... make test)"
    assert "secrets." not in text, "a fork must be able to run the workflow as it is"


# -- the image ----------------------------------------------------------------------------------
def test_image_is_plain_debian_bookworm_with_security_updates() -> None:
    assert args_of("FROM") == ["debian:bookworm"]
    assert "debian-security bookworm-security" in " ".join(args_of("RUN"))


def test_image_installs_every_system_piece() -> None:
    apt = " ".join(a for a in args_of("RUN") if "apt-get install" in a).split()
    # The pieces labkit's set-up looks for, plus Playwright's driver's libatomic1 and Firefox.
    wanted = {*system.DEBIAN_PACKAGES.values(), "python3-venv", "make", "libatomic1",
              "firefox-esr"}
    assert wanted - set(apt) == set()


def test_image_runs_as_the_non_root_user_binder_and_jupyterhub_expect() -> None:
    assert "NB_USER=jovyan" in args_of("ARG")
    assert "NB_UID=1000" in args_of("ARG")
    users = args_of("USER")
    assert users and users[-1] == "${NB_USER}", "the last USER must be the non-root user"
    run = " ".join(args_of("RUN"))
    assert re.search(r'useradd\b.*--uid "?\$\{NB_UID\}"?', run)
    assert "make setup" in run, "the image installs what a participant installs, as they do"
    assert all("--chown=${NB_UID}" in c for c in args_of("COPY")), "the home must stay writable"


def test_image_opens_jupyterlab_on_the_working_copy() -> None:
    cmd = json.loads(args_of("CMD")[-1])
    assert cmd[:2] == ["jupyter", "lab"]
    # Inside the container JupyterLab is the one published port; the host side stays loopback.
    assert "--ip=0.0.0.0" in cmd and "--port=8888" in cmd
    assert args_of("EXPOSE") == ["8888"]
    run = " ".join(args_of("RUN"))
    assert "--workshop notebooks workshop" in run
    assert re.search(r"root_dir.*workshop", run)


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "node_modules", "workshop"} <= ignored


def test_binder_has_one_route() -> None:
    # repo2docker builds a root Dockerfile and ignores apt.txt and postBuild: none may linger as
    # if they did something; binder/ or .binder/ would take precedence over this Dockerfile.
    for stray in ("apt.txt", "postBuild", "binder", ".binder", "runtime.txt"):
        assert not (ROOT / stray).exists(), f"{stray} would be ignored by Binder or shadow it"


# -- how people run it --------------------------------------------------------------------------
def run_commands(text: str) -> list[str]:
    return re.findall(r"(?:docker|podman) run\b[^\n`]*", text)


def test_readme_publishes_jupyterlab_on_the_host_loopback_only() -> None:
    commands = run_commands((ROOT / "README.md").read_text())
    published = [c for c in commands if re.search(r"(?:^|\s)(?:-p|--publish)[ =]", c)]
    assert published, "the README shows no `docker run -p ...` command"
    for c in published:
        for spec in re.findall(r"(?:-p|--publish)[ =](\S+)", c):
            assert spec.startswith("127.0.0.1:"), f"publishes beyond loopback: {c}"
    assert any("-p 127.0.0.1:8888:8888" in c for c in published)


def test_a_publish_without_an_address_would_be_caught() -> None:
    # Twin: `-p 8888:8888` listens on every interface of the host (the shared Wi-Fi).
    c = run_commands("docker run --rm -p 8888:8888 labkit")[0]
    specs = re.findall(r"(?:-p|--publish)[ =](\S+)", c)
    assert specs == ["8888:8888"] and not specs[0].startswith("127.0.0.1:")


def test_devcontainer_builds_the_image_as_the_non_root_user() -> None:
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    dockerfile = (ROOT / ".devcontainer" / config["build"]["dockerfile"]).resolve()
    assert dockerfile == ROOT / "Dockerfile"
    assert (ROOT / ".devcontainer" / config["build"]["context"]).resolve() == ROOT
    assert config["remoteUser"] == "jovyan"
    assert 8888 in config["forwardPorts"]
    assert "make setup" in config["postCreateCommand"]


# -- Chromium's sandbox: LABKIT_CHROMIUM_SANDBOX (the image sets auto) ---------------------------
@pytest.mark.parametrize("value, on", [("1", True), ("0", False), ("on", True), ("off", False)])
def test_sandbox_setting_decides_outright(monkeypatch: pytest.MonkeyPatch, value: str,
                                          on: bool) -> None:
    monkeypatch.setenv("LABKIT_CHROMIUM_SANDBOX", value)
    monkeypatch.setattr(system, "is_root", lambda: not on)  # the setting beats root, both ways
    monkeypatch.setattr(system, "user_namespaces", lambda: not on)
    assert system.chromium_sandbox()[0] is on


def test_sandbox_auto_turns_off_only_where_namespaces_are_forbidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_CHROMIUM_SANDBOX", "auto")
    monkeypatch.setattr(system, "is_root", lambda: False)
    monkeypatch.setattr(system, "user_namespaces", lambda: False)
    on, why = system.chromium_sandbox()
    assert not on and "user namespaces" in why and "container" in why


def test_sandbox_auto_keeps_it_where_namespaces_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # The twin: the same setting where the probe succeeds (podman's default profile) keeps it on.
    monkeypatch.setenv("LABKIT_CHROMIUM_SANDBOX", "auto")
    monkeypatch.setattr(system, "is_root", lambda: False)
    monkeypatch.setattr(system, "user_namespaces", lambda: True)
    assert system.chromium_sandbox() == (True, "on")


def test_sandbox_unset_is_on_for_a_participant_and_off_as_root(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_CHROMIUM_SANDBOX", raising=False)
    monkeypatch.setattr(system, "user_namespaces", lambda: False)  # unset never probes
    monkeypatch.setattr(system, "is_root", lambda: False)
    assert system.chromium_sandbox()[0] is True
    monkeypatch.setattr(system, "is_root", lambda: True)
    on, why = system.chromium_sandbox()
    assert not on and "root" in why


@pytest.mark.skipif(sys.platform != "linux", reason="the probe is Linux's unshare")
def test_user_namespace_probe_runs_the_real_unshare(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """The probe itself: a real `unshare` answers here, and one that fails (a stand-in on PATH
    that exits 1, as unshare does under Docker's default seccomp profile) turns it off."""
    import shutil
    assert shutil.which("unshare"), "util-linux's unshare is part of every Debian"
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert system.user_namespaces() is False


def test_sandbox_setting_that_is_no_setting_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"SANDBOX='maybe' is not a setting: use 1"):
        system.sandbox_decision("maybe", False, lambda: True)


def test_sandbox_rule_asks_for_namespaces_only_in_auto() -> None:
    asked: list[bool] = []

    def probe() -> bool:
        asked.append(True)
        return False
    assert system.sandbox_decision("", False, probe) == (True, "on") and not asked
    assert system.sandbox_decision("auto", True, probe)[0] is False and not asked  # root first
    assert system.sandbox_decision("AUTO ", False, probe)[0] is False and asked
