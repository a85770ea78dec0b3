"""The lab CA: created once, persisted, reloaded, checked, and replaced when damaged.

Every test here uses ``fresh_home``: it creates, damages or deletes the CA, so it must never touch
the session's shared lab state.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from labkit import LabPKI
from labkit.serve.pki import LEAF_VALIDITY


def _first_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _sans(cert: x509.Certificate) -> tuple[set[str], set[ipaddress._BaseAddress]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), set(san.get_values_for_type(x509.IPAddress))


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``ca``'s key signed ``leaf`` (name *and* signature, not just the issuer name)."""
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


# -- created once, persisted, reloaded -----------------------------------------------------------
def test_first_ensure_creates_the_ca_in_labkit_home(fresh_home: Path) -> None:
    assert not (fresh_home / "pki").exists()
    pki = LabPKI().ensure()  # no argument: LABKIT_HOME decides
    assert pki.dir == fresh_home / "pki"
    assert pki.status == "created"
    assert str(pki.dir) in pki.message
    for name in ("ca.pem", "ca.key", "rogue-ca.pem", "rogue-ca.key", "manifest.json"):
        assert (pki.dir / name).is_file(), name


def test_second_labpki_loads_the_same_ca(fresh_home: Path) -> None:
    first = LabPKI().ensure()
    ca_before = first.ca_pem.read_bytes()
    leaf_before = first.cert("lab").cert.read_bytes()

    second = LabPKI().ensure()
    assert second.status == "loaded"
    assert second.message == ""
    assert second.ca_pem.read_bytes() == ca_before
    # The leaf is persisted too: not reissued on every kernel start.
    assert second.cert("lab").cert.read_bytes() == leaf_before


def test_ensure_is_idempotent_on_one_instance(fresh_home: Path) -> None:
    pki = LabPKI().ensure()
    ca = pki.ca_pem.read_bytes()
    assert pki.ensure() is pki
    assert pki.status == "created"
    assert pki.ca_pem.read_bytes() == ca


def test_key_files_are_0600_and_folders_0700_even_with_a_permissive_umask(
    fresh_home: Path,
) -> None:
    # umask 0 would leave files 0666 and folders 0777 if labkit relied on the umask.
    old = os.umask(0)
    try:
        pki = LabPKI().ensure()
        for kind in ("lab", "rogue", "wrong-name"):
            pki.cert(kind)
    finally:
        os.umask(old)
    files = [p for p in pki.dir.rglob("*") if p.is_file()]
    dirs = [pki.dir] + [p for p in pki.dir.rglob("*") if p.is_dir()]
    assert len([p for p in files if p.suffix == ".key"]) == 5  # 2 CA keys + 3 leaf keys
    bad_files = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
                 if stat.S_IMODE(p.stat().st_mode) != 0o600}
    bad_dirs = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in dirs
                if stat.S_IMODE(p.stat().st_mode) != 0o700}
    assert bad_files == {}
    assert bad_dirs == {}


# -- leaves --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lab", "rogue", "wrong-name"])
def test_leaf_validity_is_at_most_825_days_and_current(fresh_home: Path, kind: str) -> None:
    cert = _first_cert(LabPKI().cert(kind).cert)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime <= dt.timedelta(days=825), lifetime
    assert LEAF_VALIDITY <= dt.timedelta(days=825)
    now = dt.datetime.now(dt.timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def test_lab_leaf_names_every_lab_host(fresh_home: Path) -> None:
    dns, ips = _sans(_first_cert(LabPKI().cert("lab").cert))
    assert {"localhost", "*.lab.test", "app.lab.test", "api.lab.test", "ws.lab.test"} <= dns
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= ips


def test_wrong_name_leaf_lacks_the_story_hosts(fresh_home: Path) -> None:
    dns, ips = _sans(_first_cert(LabPKI().cert("wrong-name").cert))
    assert "ws.lab.test" not in dns
    assert "*.lab.test" not in dns  # a wildcard would cover ws.lab.test too
    assert "localhost" not in dns and not ips
    assert dns  # it still names *something*: the lesson is a name mismatch, not a blank cert


def test_lab_leaves_are_signed_by_the_lab_ca_and_the_rogue_leaf_is_not(fresh_home: Path) -> None:
    pki = LabPKI().ensure()
    lab_ca = _first_cert(pki.ca_pem)
    rogue_ca = _first_cert(pki.dir / "rogue-ca.pem")
    # the fix: lab leaves chain to the lab CA
    assert _issued_by(_first_cert(pki.cert("lab").cert), lab_ca)
    assert _issued_by(_first_cert(pki.cert("wrong-name").cert), lab_ca)
    # its twin: the rogue leaf, same names, does not
    rogue = _first_cert(pki.cert("rogue").cert)
    assert not _issued_by(rogue, lab_ca)
    assert _issued_by(rogue, rogue_ca)
    assert _sans(rogue) == _sans(_first_cert(pki.cert("lab").cert))


def test_unknown_certificate_kind_names_the_choices(fresh_home: Path) -> None:
    with pytest.raises(ValueError, match="unknown certificate kind 'nope'.*lab.*rogue.*wrong-name"):
        LabPKI().cert("nope")


# -- damaged folders are detected and replaced ---------------------------------------------------
def _truncate_ca_pem(d: Path) -> None:
    data = (d / "ca.pem").read_bytes()
    (d / "ca.pem").write_bytes(data[: len(data) // 2])


def _delete_manifest(d: Path) -> None:
    (d / "manifest.json").unlink()


def _garbage_ca_key(d: Path) -> None:
    (d / "ca.key").write_bytes(b"this is not a private key\n")


def _half_written(d: Path) -> None:
    # An older or interrupted writer: the CA files went in, the rogue CA and manifest never did.
    for name in ("rogue-ca.pem", "rogue-ca.key", "manifest.json"):
        (d / name).unlink()
    shutil.rmtree(d / "leaves", ignore_errors=True)


def _garbage_manifest(d: Path) -> None:
    (d / "manifest.json").write_text("{not json")


def _missing_rogue_key(d: Path) -> None:
    (d / "rogue-ca.key").unlink()


def _garbage_key_with_matching_manifest(d: Path) -> None:
    # Digests agree, yet the key does not parse: only loading the CA can tell.
    import hashlib

    (d / "ca.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"]["ca.key"] = hashlib.sha256((d / "ca.key").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(manifest))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated ca.pem": (_truncate_ca_pem, "ca.pem does not match its manifest"),
    "deleted manifest": (_delete_manifest, "no manifest"),
    "garbage ca.key": (_garbage_ca_key, "ca.key does not match its manifest"),
    "half-written folder": (_half_written, "no manifest: creation was interrupted"),
    "garbage manifest": (_garbage_manifest, "unreadable manifest"),
    "missing rogue-ca.key": (_missing_rogue_key, "rogue-ca.key is missing"),
    "unparsable key, consistent manifest": (_garbage_key_with_matching_manifest,
                                            "cannot load the CA"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_folder_is_replaced_with_a_message_naming_the_problem(
    fresh_home: Path, damage: str
) -> None:
    hurt, problem = DAMAGE[damage]
    first = LabPKI().ensure()
    first.cert("lab")
    old_ca = first.ca_pem.read_bytes()
    hurt(first.dir)

    second = LabPKI().ensure()
    assert second.status == "replaced"
    assert problem in second.message
    assert str(second.dir) in second.message
    assert "replaced it with a new lab CA" in second.message
    new_ca = second.ca_pem.read_bytes()
    assert new_ca != old_ca
    # The replacement is whole: leaves chain to the new CA, and the next kernel just loads it.
    assert _issued_by(_first_cert(second.cert("lab").cert), _first_cert(second.ca_pem))
    third = LabPKI().ensure()
    assert third.status == "loaded"
    assert third.ca_pem.read_bytes() == new_ca


def test_a_leftover_scratch_folder_is_not_mistaken_for_the_ca(fresh_home: Path) -> None:
    # A kernel killed mid-creation leaves pki.partial-*; the real folder was never renamed in.
    scratch = fresh_home / "pki.partial-deadbeef"
    scratch.mkdir(mode=0o700)
    (scratch / "ca.pem").write_bytes(b"-----BEGIN CERT")
    pki = LabPKI().ensure()
    assert pki.status == "created"
    assert _issued_by(_first_cert(pki.cert("lab").cert), _first_cert(pki.ca_pem))


def test_a_damaged_leaf_key_is_reissued(fresh_home: Path) -> None:
    """``LabPKI.leaf`` promises to reissue a leaf that is "missing, unreadable or near expiry".
    A leaf key cut short (a kernel killed while reissuing) must be reissued, not handed to
    ``load_cert_chain`` where it fails with an opaque ``[SSL] PEM lib`` error."""
    first = LabPKI().ensure()
    files = first.cert("lab")
    files.key.write_bytes(files.key.read_bytes()[:40])

    again = LabPKI().ensure()
    ctx = again.server_context("lab")  # must not raise ssl.SSLError
    assert isinstance(ctx, ssl.SSLContext)


def test_a_missing_leaf_is_reissued(fresh_home: Path) -> None:
    files = LabPKI().cert("lab")
    files.cert.unlink()
    again = LabPKI().cert("lab")
    assert again.cert.is_file()
    assert isinstance(LabPKI().server_context("lab"), ssl.SSLContext)


# -- the client side -----------------------------------------------------------------------------
def test_client_context_trusts_the_lab_ca_only(fresh_home: Path) -> None:
    pki = LabPKI().ensure()
    ctx = pki.client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    trusted = ctx.get_ca_certs(binary_form=True)
    lab_ca = _first_cert(pki.ca_pem)
    rogue_ca = _first_cert(pki.dir / "rogue-ca.pem")
    from cryptography.hazmat.primitives.serialization import Encoding

    # exactly the lab CA: not the system store, not the rogue CA
    assert trusted == [lab_ca.public_bytes(Encoding.DER)]
    assert rogue_ca.public_bytes(Encoding.DER) not in trusted
    orgs = [a.value for a in lab_ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["labkit"]


def test_the_lab_state_folder_is_private_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "state"
    old = os.umask(0)
    try:
        LabPKI(home).ensure()
    finally:
        os.umask(old)
    assert home.stat().st_mode & 0o777 == 0o700


def test_a_ca_in_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    from labkit import UnsafeFolderError

    home = tmp_path / "state"
    LabPKI(home).ensure()
    assert LabPKI(home).ensure().status == "loaded"  # the twin: a private folder loads
    os.chmod(home, 0o777)
    with pytest.raises(UnsafeFolderError, match=r"can be written by other users \(mode 777\)"):
        LabPKI(home).ensure()
    os.chmod(home, 0o700)
    os.chmod(home / "pki", 0o775)
    with pytest.raises(UnsafeFolderError, match="chmod 700"):
        LabPKI(home).ensure()
