"""labkit's Python clients: they reach ``*.lab.test`` at 127.0.0.1 with the TLS server name set, the
same mapping the browser gets from its host resolver rules — nothing edits /etc/hosts.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from websockets.asyncio.client import connect

from ..model.policy import CROSS_SITE_DOMAIN, LAB_DOMAIN
from .pki import LabPKI


def is_lab_name(host: str | None) -> bool:
    return bool(host) and any(host == d or str(host).endswith("." + d)
                              for d in (LAB_DOMAIN, CROSS_SITE_DOMAIN))


class LabResolver(AbstractResolver):
    """Resolves lab names to 127.0.0.1 and everything else the usual way."""

    def __init__(self) -> None:
        self._default = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if is_lab_name(host):
            return [ResolveResult(hostname=host, host="127.0.0.1", port=port,
                                  family=socket.AF_INET, proto=0, flags=socket.AI_NUMERICHOST)]
        return await self._default.resolve(host, port, family)

    async def close(self) -> None:
        await self._default.close()


def http_session(pki: LabPKI | None = None, **kw: Any) -> aiohttp.ClientSession:
    """An aiohttp session that trusts the lab CA (only) and resolves lab names."""
    ctx = (pki or LabPKI()).client_context()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx, resolver=LabResolver()), **kw)


def ws_connect(url: str, pki: LabPKI | None = None, **kw: Any) -> Any:
    """``websockets`` connect() for lab URLs: lab CA trust, lab names at 127.0.0.1, SNI kept."""
    parts = urlsplit(url)
    if parts.scheme == "wss":
        kw.setdefault("ssl", (pki or LabPKI()).client_context())
    if is_lab_name(parts.hostname):
        kw.setdefault("host", "127.0.0.1")  # the connect address; the URL's host stays the SNI
    return connect(url, **kw)


__all__ = ["LabResolver", "http_session", "is_lab_name", "ws_connect"]
