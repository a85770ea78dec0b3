"""The API's CORS policy: which headers to answer with, decided from the request alone (no I/O).

Why not aiohttp-cors: the lab must be able to *misconfigure* CORS the way the story's team did —
allow-list GET/POST but never answer the preflight, send ``Access-Control-Allow-Origin: *`` together
with credentials, or send nothing at all. aiohttp-cors answers preflights for every configured route
and turns ``*`` with credentials into a reflected origin, so it cannot express the broken
policies the
lessons need. This follows the shape of starlette's CORSMiddleware: a pure decision from headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MODES = ("none", "allowlist", "wildcard", "reflect", "raw")


@dataclass(frozen=True)
class CorsPolicy:
    """How the API answers cross-origin requests.

    mode:        ``none`` (no CORS headers: the story's bug), ``allowlist`` (echo an allowed
                 origin), ``wildcard`` (``*``), ``reflect`` (echo *any* Origin, ``null`` too:
                 the copied "fix" that lets every origin read), ``raw`` (exactly the headers
                 in ``raw``, on every answer, preflights included: write them yourself).
    origins:     for ``allowlist``: origins (``https://localhost:8443``), ``null`` (the origin of
                 sandboxed frames and ``data:`` pages), or names of lab services whose origin is
                 meant (``web``), resolved when the lab starts.
    credentials: also send ``Access-Control-Allow-Credentials: true``.
    preflight:   answer ``OPTIONS`` preflights; when False they get 405 with no CORS headers.
    """

    mode: str = "none"
    origins: tuple[str, ...] = ()
    credentials: bool = False
    preflight: bool = True
    methods: tuple[str, ...] = ("GET", "POST")
    headers: tuple[str, ...] = ("content-type",)
    max_age: int = 0  # 0: no caching, so a fixed policy shows on the very next request
    #: For ``raw``: the response headers, as (name, value) pairs.
    raw: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            from ..errors import TopologyError

            raise TopologyError(f"CORS mode {self.mode!r} is not one of {', '.join(MODES)}",
                                "e.g. CorsPolicy('allowlist', ('web',)) or CorsPolicy('none').")

    def describe(self) -> str:
        if self.mode == "none":
            return "no CORS headers"
        what = {"wildcard": "ACAO: *", "reflect": "ACAO: echoes any Origin",
                "raw": "; ".join(f"{k}: {v}" for k, v in self.raw) or "no headers"}.get(
            self.mode, "ACAO: " + " | ".join(self.origins))
        if self.credentials:
            what += ", credentials"
        if not self.preflight:
            what += ", preflight unanswered"
        return what


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method (Fetch §3.2.2)."""
    return (
        method.upper() == "OPTIONS"
        and "origin" in _lower(headers)
        and "access-control-request-method" in _lower(headers)
    )


def response_headers(
    policy: CorsPolicy, origin: str | None, allowed_origins: Sequence[str], preflight: bool = False
) -> dict[str, str]:
    """The CORS headers the API adds for a request from ``origin``.

    ``allowed_origins`` are the policy's origins already resolved to strings.
    """
    if origin is None or policy.mode == "none":
        return {}
    if policy.mode == "raw":  # what the participant wrote, whatever the request
        return dict(policy.raw)
    out: dict[str, str] = {}
    if policy.mode == "wildcard":
        out["Access-Control-Allow-Origin"] = "*"
    elif policy.mode == "reflect" or origin in allowed_origins:
        out["Access-Control-Allow-Origin"] = origin
        # The answer depends on Origin: a shared cache must not serve one origin's to another.
        out["Vary"] = "Origin"
    else:
        return {}
    if policy.credentials:
        out["Access-Control-Allow-Credentials"] = "true"
    if preflight:
        out["Access-Control-Allow-Methods"] = ", ".join(policy.methods)
        out["Access-Control-Allow-Headers"] = ", ".join(policy.headers)
        out["Access-Control-Max-Age"] = str(policy.max_age)
    return out


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
