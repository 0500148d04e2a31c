"""Image URLs fetched safely: a client must not be able to make the server reach what only the server can reach.

Redirects are followed one hop at a time; every hop's host is resolved by the server and refused unless all its
addresses are public (not loopback, private, link-local, metadata, multicast or reserved) or allowed by the
operator (``allow_private_urls``, ``allowed_url_networks``), and the connection goes to the addresses that were
checked (no second lookup an attacker's DNS could answer differently). Upstream errors are logged, never echoed
to the client. Bodies are read completely, up to ``max_image_bytes``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from aiohttp.abc import AbstractResolver

from docrerank.server.errors import Rejected, Unscorable, check_image_size
from docrerank.server.settings import ServerSettings

__all__ = ["fetch_image"]

log = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address behind a NAT64 gateway


def _address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: ServerSettings) -> bool:
    """Public, or allowed by the operator: the addresses an image URL may be fetched from."""
    if settings.allow_private_urls:
        return True
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address):  # an IPv4 address inside an IPv6 one is checked as itself
        embedded = address.ipv4_mapped or address.sixtofour
        if address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.append(embedded)
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.allowed_url_networks]
    for candidate in candidates:
        if any(candidate.version == n.version and candidate in n for n in networks):
            continue
        if not candidate.is_global or candidate.is_multicast:
            return False
    return True


class _PinnedResolver(AbstractResolver):
    """aiohttp's resolver of a fetch: answers only the addresses the server checked for the hop's host."""

    def __init__(self) -> None:
        self.pinned: dict[str, list[dict[str, Any]]] = {}

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        if host not in self.pinned:
            raise OSError(f"{host} was not resolved by the server's address check")
        return [{**entry, "port": port} for entry in self.pinned[host]]

    async def close(self) -> None:
        pass


async def _check_host(url, where: str, resolver: _PinnedResolver, settings: ServerSettings) -> None:
    """Refuse a hop whose host is (or resolves to) an address this server does not fetch from; pin the rest."""
    host = url.raw_host or ""
    refused = Rejected(
        400,
        f"{where}: the image URL's host {host!r} is, or resolves to, an address this server does not fetch from "
        "(loopback, private, link-local, metadata or otherwise not public); an operator allows them with "
        "`docrerank serve --allow-private-urls` or --allow-url-network CIDR",
    )
    try:
        literal = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        literal = None
    if literal is not None:
        if not _address_allowed(literal, settings):
            raise refused
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        log.warning("%s: cannot resolve %r: %r", where, host, exc)
        raise Unscorable("its image URL's host could not be resolved") from None
    entries = []
    for family, _, proto, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not _address_allowed(address, settings):
            log.warning("%s: refused to fetch from %r: it resolves to %s", where, host, address)
            raise refused
        entries.append(
            {
                "hostname": host,
                "host": str(sockaddr[0]),
                "family": family,
                "proto": proto,
                "flags": socket.AI_NUMERICHOST,
            }
        )
    resolver.pinned[host] = entries


async def _read_body(response, where: str, settings: ServerSettings) -> bytes:
    """The whole body, chunk by chunk as it arrives, refused once it is over ``max_image_bytes``."""
    declared = response.content_length
    if declared is not None:
        check_image_size(declared, where, settings)
    data = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        data += chunk
        check_image_size(len(data), where, settings)
    return bytes(data)


async def _fetch_hops(url: str, where: str, settings: ServerSettings) -> bytes:
    import aiohttp
    from yarl import URL

    resolver = _PinnedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    current = URL(url)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        for _ in range(settings.max_redirects + 1):
            if current.scheme not in ("http", "https") or not current.raw_host:
                raise Rejected(400, f"{where}: the image URL redirects to a URL that is not http(s)")
            await _check_host(current, where, resolver, settings)
            try:
                async with session.get(current, allow_redirects=False) as response:
                    if response.status in REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise Unscorable(f"its image URL answered HTTP {response.status} without a Location")
                        current = current.join(URL(location))
                        continue
                    if response.status != 200:
                        raise Unscorable(f"its image URL answered HTTP {response.status}")
                    return await _read_body(response, where, settings)
            except aiohttp.ClientError as exc:
                log.warning("%s: fetching %s failed: %r", where, current, exc)
                raise Unscorable("its image URL could not be fetched (the connection failed)") from None
    raise Unscorable(f"its image URL redirected more than {settings.max_redirects} times (max_redirects)")


async def fetch_image(url: str, where: str, settings: ServerSettings) -> bytes:
    try:
        return await asyncio.wait_for(_fetch_hops(url, where, settings), settings.url_timeout_s)
    except asyncio.TimeoutError:
        log.warning("%s: fetching %s took over %s s", where, url, settings.url_timeout_s)
        raise Unscorable(f"fetching its image URL took over {settings.url_timeout_s:g} s (url_timeout_s)") from None
