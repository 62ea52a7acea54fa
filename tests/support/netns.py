"""Other "hosts" on this machine: network namespaces joined to it by veth pairs, for fault tests that
need a worker on a host of its own (a partition of one host from one service, a skewed clock).

Each `NetnsHost` is one namespace with one veth pair per named path (e.g. "redis", "pg", "rest"), each
pair a private /30 of 10.200.N.0/24 (N chosen at random among the unused ones) that exists only inside
that pair: the namespace gets no default route, so a process in it can reach exactly the host ends of
its pairs and nothing else. The services on this machine listen on 127.0.0.1 only; a `Relay` listens on
a pair's host end and forwards to the loopback port. A path is cut with `ip link set <host end> down`:
packets are then dropped silently in both directions (no RST, no ICMP), which is what a real partition
looks like to TCP, and established connections survive it and resume once the link is back up.

Everything is removed on `close()` (namespace, veth pairs, relays), also when a test fails.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from tests.support.tcpproxy import TcpProxy

IP = "ip"
# Names of every namespace and interface made here start with this, so a leftover is easy to recognise.
PREFIX = "gqh"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check, timeout=30)


def netns_unavailable() -> str | None:
    """None when namespaces and veth pairs can be made here, else why not (a test skips with it)."""
    name = f"{PREFIX}probe{os.getpid() % 100000}"
    veth = f"{PREFIX}p{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", name)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` is not permitted here: {exc.stderr.strip() or exc.returncode}"
    try:
        _ip("netns", "exec", name, "true")
    except subprocess.CalledProcessError as exc:
        _ip("netns", "del", name, check=False)
        return f"`ip netns exec` is not permitted here: {exc.stderr.strip() or exc.returncode}"
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", veth + "n")
        _ip("link", "set", veth + "n", "netns", name)
        _ip("link", "del", veth)
    except subprocess.CalledProcessError as exc:
        return f"veth pairs cannot be made here: {exc.stderr.strip() or exc.returncode}"
    finally:
        _ip("link", "del", veth, check=False)
        _ip("netns", "del", name, check=False)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.200.N.0/24 that no interface or route of this machine uses (a parallel run picks another)."""
    used = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all").stdout
    for _ in range(100):
        n = 1 + secrets.randbelow(254)
        if f"10.200.{n}." not in used:
            return ipaddress.IPv4Network(f"10.200.{n}.0/24")
    raise RuntimeError("no free 10.200.N.0/24 subnet")


@dataclass(frozen=True)
class Link:
    """One veth pair: `host_if` (on this machine, address `host_ip`) and its peer in the namespace."""

    path: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str


class NetnsHost:
    """A namespace joined to this machine by one veth pair per path in `paths`."""

    def __init__(self, paths: Sequence[str]) -> None:
        tag = secrets.token_hex(2)
        self.name = f"{PREFIX}-{tag}"
        subnet = _free_subnet()
        self.links: dict[str, Link] = {}
        for i, path in enumerate(paths):
            net = list(subnet.subnets(new_prefix=30))[i]
            host_ip, ns_ip = (str(a) for a in list(net.hosts())[:2])
            self.links[path] = Link(path, f"{PREFIX}{tag}{i}h", f"{PREFIX}{tag}{i}n", host_ip, ns_ip)
        self._made: list[str] = []  # host-side interfaces made so far (deleting one deletes its pair)
        self._ns_made = False
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        _ip("netns", "add", self.name)
        self._ns_made = True
        _ip("-n", self.name, "link", "set", "lo", "up")  # the worker's own 127.0.0.1
        for link in self.links.values():
            _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if)
            self._made.append(link.host_if)
            _ip("link", "set", link.ns_if, "netns", self.name)
            _ip("addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
            _ip("link", "set", link.host_if, "up")
            _ip("-n", self.name, "addr", "add", f"{link.ns_ip}/30", "dev", link.ns_if)
            _ip("-n", self.name, "link", "set", link.ns_if, "up")
        # Deliberately no default route inside: only the /30s above are reachable from the namespace.

    def ip(self, path: str) -> str:
        """The address a process in the namespace reaches `path`'s services at (the pair's host end)."""
        return self.links[path].host_ip

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: the pid is the command's own)."""
        return [IP, "netns", "exec", self.name, *argv]

    def cut(self, path: str) -> None:
        """Partition the namespace from `path`: its host end goes down, packets vanish both ways."""
        _ip("link", "set", self.links[path].host_if, "down")

    def heal(self, path: str) -> None:
        _ip("link", "set", self.links[path].host_if, "up")

    def close(self) -> None:
        for host_if in reversed(self._made):
            _ip("link", "del", host_if, check=False)
        self._made.clear()
        if self._ns_made:
            _ip("netns", "del", self.name, check=False)
            self._ns_made = False

    def __enter__(self) -> NetnsHost:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Relay(TcpProxy):
    """A TCP forwarder: listens on `listen_ip` (a pair's host end), forwards to 127.0.0.1:`target_port`.
    It is never taken down to make a fault (the link is): it stands in for a service that listens on
    the network, which is what the services of a multi-host deployment do."""

    def __init__(self, listen_ip: str, target_port: int) -> None:
        super().__init__("127.0.0.1", target_port, listen_host=listen_ip)
        self.start()

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self.down()
