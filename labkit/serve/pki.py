"""The lab's certificate authority, built on trustme and persisted in the lab state folder.

Why persisted: the browser trusts the CA through an NSS db built from ``ca.pem``; re-creating the CA
on every kernel start would make every screenshot and fingerprint change, and cost a second.

Safety rules this module enforces:
- every PEM (certificates and keys) is written with mode 0600 into a 0700 folder;
- the CA is created in a scratch folder and renamed into place only once complete, with a
  manifest of SHA-256 digests written last, so a half-written or tampered folder is detected
  and replaced;
- nothing here touches the system's or a user's browser trust store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import CAFileMissingError, UnsafeFolderError
from ..model.deployment import LAB_NAMES, WILDCARD_NAMES, WRONG_NAMES

log = logging.getLogger("labkit.pki")

#: Longest leaf validity Apple platforms accept even under a private CA (notAfter - notBefore).
LEAF_VALIDITY = dt.timedelta(days=825)
#: Reissue a persisted leaf when it has less than this left.
LEAF_RENEW_BEFORE = dt.timedelta(days=30)
MANIFEST_VERSION = 1

# The names each certificate covers are part of the deployment model (the browser's view).


_CA_FILES = ("ca.pem", "ca.key", "rogue-ca.pem", "rogue-ca.key")


def default_home() -> Path:
    """The lab state folder: ``$LABKIT_HOME`` or ``~/.cache/labkit``."""
    env = os.environ.get("LABKIT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "labkit"


def _write_private(path: Path, data: bytes) -> None:
    # O_CREAT with 0600 so the key is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class CertFiles:
    """A certificate chain and its key on disk, ready for ``load_cert_chain`` or nginx."""

    name: str
    cert: Path
    key: Path
    names: tuple[str, ...]
    issuer: str  # "lab" or "rogue"

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def summary(self) -> CertSummary:
        """What a browser's certificate viewer shows: subject, names, issuer, validity."""
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n) for n in san.get_values_for_type(x509.DNSName)) + tuple(
            str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        return CertSummary(cert.subject.rfc4514_string(), names, cert.issuer.rfc4514_string(),
                           (cert.not_valid_after_utc - cert.not_valid_before_utc).days)


@dataclass(frozen=True)
class CertSummary:
    """A certificate as a reader sees it. Names are the subjectAltName entries, which are all a
    browser matches (RFC 9525 §6.3; the subject's CN is ignored). Validity is a length in days:
    the dates themselves differ on every machine."""

    subject: str
    names: tuple[str, ...]
    issuer: str
    days: int

    def __str__(self) -> str:
        return (f"subject {self.subject}; subjectAltName {', '.join(self.names)}; "
                f"issuer {self.issuer}; valid {self.days} days")


class LabPKI:
    """The lab CA, a rogue CA, and leaf certificates, persisted under ``home/pki``.

    >>> pki = LabPKI().ensure()          # loads, creates, or replaces a damaged folder
    >>> pki.ca_pem                        # give this to clients that should trust the lab
    >>> pki.cert("lab").server_context()  # what a lab server presents
    """

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.dir = self.home / "pki"
        self.status = "not loaded"  # "loaded" | "created" | "replaced"
        self.message = ""
        self._ca: trustme.CA | None = None
        self._rogue: trustme.CA | None = None

    def __repr__(self) -> str:
        return f"<LabPKI {self.dir} {self.status}>"

    # -- the CA folder ---------------------------------------------------------------------------
    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    def ensure(self) -> LabPKI:
        """Load the persisted CA; create it if absent; replace it (with a message) if damaged."""
        if self._ca is not None:
            return self
        self._check_private()
        problem = self._problem()
        if problem is None:
            self._load()
            self.status = "loaded"
        elif problem == "absent":
            self._create()
            self.status = "created"
            self.message = f"created a new lab CA in {self.dir}"
            log.info(self.message)
        else:
            self._discard()
            self._create()
            self.status = "replaced"
            self.message = (
                f"the lab CA folder {self.dir} was damaged ({problem}); replaced it with a new "
                f"lab CA. Browsers started by labkit trust the new one automatically."
            )
            log.warning(self.message)
        return self

    def refresh(self) -> LabPKI:
        """Re-check the folder on disk (it is safe to delete at any time): rebuild it if it went
        missing or was damaged since it was loaded, else keep the loaded CA."""
        if self._ca is not None and self._problem() is not None:
            self._ca = self._rogue = None
            self.status = "not loaded"
        return self.ensure()

    def ca_digest(self) -> str:
        """SHA-256 of the CA certificate: what a browser's trust was built from."""
        return _digest(self.ca_pem)

    def _check_private(self) -> None:
        """The lab state folder is created 0700 whatever the umask, and a CA is never loaded
        from a folder other users can write (they could have swapped it)."""
        if not self.home.exists():
            self.home.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(self.home, 0o700)  # mkdir's mode is masked by the umask; be explicit
        for folder in (self.home, self.dir):
            if folder.exists() and folder.stat().st_mode & 0o022:
                raise UnsafeFolderError(str(folder), folder.stat().st_mode & 0o777)

    def _problem(self) -> str | None:
        """Why the folder cannot be used, ``"absent"`` if there is none, or None if it is fine."""
        if not self.dir.exists():
            return "absent"
        manifest = self.dir / "manifest.json"
        if not manifest.exists():
            return "no manifest: creation was interrupted"
        try:
            data = json.loads(manifest.read_text())
            digests = data["files"]
            if data.get("version") != MANIFEST_VERSION:
                return f"manifest version {data.get('version')!r} is not {MANIFEST_VERSION}"
        except (ValueError, KeyError, TypeError) as e:
            return f"unreadable manifest: {e}"
        for name in _CA_FILES:
            path = self.dir / name
            if not path.exists():
                return f"{name} is missing"
            if digests.get(name) != _digest(path):
                return f"{name} does not match its manifest digest"
        try:
            read = lambda n: (self.dir / n).read_bytes()  # noqa: E731
            trustme.CA.from_pem(read("ca.pem"), read("ca.key"))
            trustme.CA.from_pem(read("rogue-ca.pem"), read("rogue-ca.key"))
        except Exception as e:  # any parse failure means the folder is unusable
            return f"cannot load the CA: {e}"
        return None

    def _load(self) -> None:
        read = lambda n: (self.dir / n).read_bytes()  # noqa: E731
        self._ca = trustme.CA.from_pem(read("ca.pem"), read("ca.key"))
        self._rogue = trustme.CA.from_pem(read("rogue-ca.pem"), read("rogue-ca.key"))

    def _create(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # Scratch folders of interrupted creations hold CA keys: never leave them lying around.
        # (Only stale ones: a fresh one may belong to another kernel creating the CA right now.)
        for old in self.home.glob("pki.partial-*"):
            if time.time() - old.stat().st_mtime > 60:
                shutil.rmtree(old, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix="pki.partial-", dir=self.home))
        try:
            ca = trustme.CA(organization_name="labkit", organization_unit_name="lab CA")
            rogue = trustme.CA(organization_name="rogue", organization_unit_name="not the lab CA")
            _write_private(scratch / "ca.pem", ca.cert_pem.bytes())
            _write_private(scratch / "ca.key", ca.private_key_pem.bytes())
            _write_private(scratch / "rogue-ca.pem", rogue.cert_pem.bytes())
            _write_private(scratch / "rogue-ca.key", rogue.private_key_pem.bytes())
            manifest = {
                "version": MANIFEST_VERSION,
                "files": {n: _digest(scratch / n) for n in _CA_FILES},
            }
            # Written last: its presence means every file above is complete.
            _write_private(scratch / "manifest.json", json.dumps(manifest, indent=1).encode())
            os.chmod(scratch, 0o700)
            try:
                os.rename(scratch, self.dir)
            except OSError:
                # Another kernel finished first: use its CA, it is just as good.
                shutil.rmtree(scratch, ignore_errors=True)
                if self._problem() is not None:
                    raise
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        self._load()

    def _discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- leaves ----------------------------------------------------------------------------------
    def cert(self, kind: str = "lab") -> CertFiles:
        """A named leaf: ``lab`` (all lab names), ``rogue`` (same, rogue CA), ``wrong-name``,
        ``wildcard`` (``*.lab.test`` only)."""
        kinds = {
            "lab": (LAB_NAMES, "lab"),
            "rogue": (LAB_NAMES, "rogue"),
            "wrong-name": (WRONG_NAMES, "lab"),
            "wildcard": (WILDCARD_NAMES, "lab"),
        }
        if kind not in kinds:
            raise ValueError(f"unknown certificate kind {kind!r}; choose one of {sorted(kinds)}")
        names, issuer = kinds[kind]
        return self.leaf(names, issuer=issuer, name=kind)

    def for_service(self, cert: str, host: str) -> CertFiles:
        """The certificate a TLS service presents: ``own`` is one for its host name only, as a
        cloud load balancer's managed certificate is; any other kind is :meth:`cert`'s."""
        if cert == "own":
            return self.leaf((host.lower(),), name=f"own-{host.lower()}")
        return self.cert(cert)

    def leaf(self, names: tuple[str, ...], issuer: str = "lab", name: str | None = None
             ) -> CertFiles:
        """A persisted leaf for ``names``; reissued when missing, unreadable or near expiry."""
        self.ensure()
        if name is None:
            name = issuer + "-" + hashlib.sha256("|".join(names).encode()).hexdigest()[:12]
        folder = self.dir / "leaves"
        folder.mkdir(mode=0o700, exist_ok=True)
        files = CertFiles(name, folder / f"{name}.pem", folder / f"{name}.key", names, issuer)
        if not self._leaf_ok(files):
            self._issue(files)
        return files

    def _leaf_ok(self, files: CertFiles) -> bool:
        if not (files.cert.exists() and files.key.exists()):
            return False
        try:
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
            ca = self._ca if files.issuer == "lab" else self._rogue
            assert ca is not None
            ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
            if cert.issuer != ca_cert.subject:
                return False
            # A leaf from an older labkit may name fewer hosts than this one's model does.
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
                str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
            if have != set(files.names):
                return False
            key = serialization.load_pem_private_key(files.key.read_bytes(), None)
            spki = serialization.PublicFormat.SubjectPublicKeyInfo
            der = serialization.Encoding.DER
            mine = key.public_key().public_bytes(der, spki)
            if mine != cert.public_key().public_bytes(der, spki):
                return False  # e.g. a key rewritten by a kernel killed mid-issue
            left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
            return left > LEAF_RENEW_BEFORE
        except Exception:
            return False

    def _issue(self, files: CertFiles) -> None:
        ca = self._ca if files.issuer == "lab" else self._rogue
        assert ca is not None
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        leaf = ca.issue_cert(
            *files.names,
            organization_name="labkit",
            not_before=start,
            not_after=start + LEAF_VALIDITY,
        )
        chain = b"".join(p.bytes() for p in leaf.cert_chain_pems)
        # Each file is written aside and renamed into place, so a reader never sees half of one.
        for path, data in ((files.key, leaf.private_key_pem.bytes()), (files.cert, chain)):
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            _write_private(tmp, data)
            os.replace(tmp, path)

    # -- contexts --------------------------------------------------------------------------------
    def server_context(self, kind: str = "lab") -> ssl.SSLContext:
        return self.cert(kind).server_context()

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the lab CA only (not the system store, not the rogue CA)."""
        self.ensure()
        if not self.ca_pem.exists():
            raise CAFileMissingError(str(self.ca_pem))
        return ssl.create_default_context(cafile=str(self.ca_pem))
