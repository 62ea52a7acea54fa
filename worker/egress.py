"""Where outbound requests may go: the origin allow-list rule and the public-address check of output
downloads (`worker.fetch`), and the scheme default ports the Replicate client's `urls.get` origin check
compares with.

Entries are origins: ``host:port`` allows that port only, a bare ``host`` (or ``*.domain``) only the
scheme's default port (443/80). An address is public only if a connection to it can reach nothing but
the public internet (``is_public``: ``is_global`` plus the classes it misses, and v4 addresses
embedded in v6 ones).
"""

from __future__ import annotations

import ipaddress

DEFAULT_PORTS = {"http": 80, "https": 443}
# Ranges ipaddress's is_global does not exclude (or not on every Python version): IETF protocol
# assignments, 6to4 and Teredo (relayed: the real destination, possibly a private v4 address, is
# embedded in the address and decided by a relay), deprecated site-local, and local-use NAT64.
_NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.0/24", "2002::/16", "2001::/32", "fec0::/10", "64:ff9b:1::/48",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are the v4 target


def parse_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare v6 literal -> (host, port or None)."""
    entry = entry.strip().lower()
    port: str | None = None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, port = entry.split(":", 1)
    else:
        host = entry
    host = host.rstrip(".")
    if port is None or not port.strip():
        return host, None
    return host, int(port) if port.strip().isdigit() else -1  # -1 matches no port: a typo allows nothing


def host_allowed(
    host: str, allowed_hosts: list[str], port: int | None = None, scheme: str = "https"
) -> tuple[bool, bool]:
    """(allowed, listed exactly) for ``host:port`` (``port`` None: the scheme's default).

    Entries are exact names or IP literals, or ``*.example.com``, each with an optional ``:port``;
    without one an entry allows only the scheme's default port."""
    host = parse_entry(host)[0]
    default = DEFAULT_PORTS.get(scheme)
    port = default if port is None else port
    for raw in allowed_hosts:
        entry, entry_port = parse_entry(raw)
        if (default if entry_port is None else entry_port) != port:
            continue
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True, False
        elif entry and host == entry:
            return True, True
    return False, False


def ip_of(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None


def is_public(address: str) -> bool:
    """Whether a connection to ``address`` can only reach the public internet."""
    ip = ip_of(address)
    if ip is None or any(ip in net for net in _NOT_PUBLIC if net.version == ip.version):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(str(ip.ipv4_mapped))
        if ip in _NAT64 or int(ip) >> 32 == 0:  # NAT64, or v4-compatible ::a.b.c.d (and ::, ::1)
            return is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_private)
