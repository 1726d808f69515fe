"""Which interfaces a host name or address means: the one predicate behind every "bound to
loopback?" decision (the endpoint's exposure warning, the web page's token rule, joining a Ray
cluster by address)."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to bind or an address to reach) means this machine only:
    ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``, also bracketed ``[::1]``
    and IPv4-mapped ``::ffff:127.0.0.1``). ``0.0.0.0``, ``::`` (every interface) and any other
    host name (it may resolve to any interface) are not."""
    name = host.strip().strip("[]").split("%")[0]
    if name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; another process may take it
    before the caller binds, so callers that start a server retry or check)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
