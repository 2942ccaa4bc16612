"""Which outgoing connections go through the corporate proxy: HTTPS_PROXY / HTTP_PROXY, except where NO_PROXY says."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Proxies", "shown"]

_SECURE = ("https", "wss")


@dataclass(frozen=True)
class Proxies:
    """One decision per URL, made the way curl and Python's urllib make it, for every client the bot has.

    slack_sdk reads HTTPS_PROXY itself but ignores NO_PROXY, and aiohttp reads neither unless told to (and then only
    the process environment, not `.env`): so the bot decides here, from its settings, and hands each client its route.
    """

    https: str | None = None
    http: str | None = None
    no_proxy: str = ""

    def for_url(self, url: str) -> str | None:
        """The proxy for `url` (user and password included), or None to connect directly.

        `https://` and `wss://` go through HTTPS_PROXY (else HTTP_PROXY), `http://` and `ws://` through HTTP_PROXY.
        NO_PROXY is a comma-separated list of host names, domain suffixes (`.corp.example`), `host:port`, or `*`.
        """
        parts = urlsplit(url)
        proxy = (self.https or self.http) if parts.scheme in _SECURE else self.http
        if proxy is None or not parts.hostname:
            return None
        return None if _bypassed(parts.hostname, parts.port, self.no_proxy) else proxy


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """NO_PROXY as curl and urllib read it: `*`, a host, a domain and its subdomains (`corp.example` or
    `.corp.example`), or a `host:port`. Address ranges (`10.0.0.0/8`) are not understood, as by urllib."""
    host = host.lower()
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def shown(proxy: str | None) -> str:
    """A route as a log line may show it: the proxy's address without its user and password."""
    if proxy is None:
        return "direct"
    parts = urlsplit(proxy)
    auth = "user:***@" if parts.username or parts.password else ""
    return f"proxy {parts.scheme}://{auth}{parts.hostname}" + (f":{parts.port}" if parts.port else "")
