"""Which callback URLs a stage may call: checked at publish, and again before every delivery.

A callback makes taskproc's own functions send a request to a URL a client chose. Unchecked, that
is server-side request forgery: the instance metadata address (169.254.169.254), the VPC's private
addresses and the function's loopback are all one URL away. So on a deployed stage a callback URL
must be `https`, carry no credentials, name a host on the stage's allowlist (`CALLBACK_ALLOWED_HOSTS`:
empty by default, which turns callbacks off), and every address that host resolves to must be a
public one: not loopback, link-local, private, multicast, unspecified or reserved (the standard
library's `ipaddress` properties), nor otherwise outside the global address space. Offline the
stack and its receivers run on loopback: there `http` and loopback addresses are allowed, and the
allowlist applies only when it is set; every other address rule still holds.

The addresses are checked again when a delivery is made, since DNS may answer differently by then
(a rebinding name answers a public address at publish and 127.0.0.1 later): `check` returns the
addresses it checked, and the delivery connects to one of them without resolving the name again
(delivery.py). No library of the field checks a URL against a resolved-address policy and hands
the checked address to the standard library's client, hence this module.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# A resolver: a host and port in, the addresses it resolves to out (socket.gaierror when none).
Resolver = Callable[[str, int], list[str]]
DEFAULT_PORTS = {"http": 80, "https": 443}


class CallbackRefused(Exception):
    """A callback URL breaks one of the stage's rules; the message is the rule, in words.

    `transient` is set when the rule may pass later without anyone changing anything (the host did
    not resolve): a delivery then fails its attempt and is retried instead of failing for good.
    """

    def __init__(self, rule: str, *, transient: bool = False) -> None:
        super().__init__(rule)
        self.rule = rule
        self.transient = transient


@dataclass(frozen=True)
class Target:
    """A checked callback URL: what to connect to (`addresses`) and what to say (host, port, path)."""

    scheme: str
    host: str
    port: int
    path: str  # the path and query, as the request line carries them
    addresses: tuple[str, ...]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# Named address classes, in the order a refusal names the first that matches.
_CLASSES: tuple[tuple[str, str], ...] = (
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local (169.254.0.0/16, fe80::/10: the instance metadata address among them)"),
    ("is_multicast", "multicast"),
    ("is_unspecified", "unspecified (0.0.0.0, ::)"),
    ("is_reserved", "reserved"),
    # Last: to `ipaddress` the unspecified and reserved blocks are private too.
    ("is_private", "private (10/8, 172.16/12, 192.168/16, fc00::/7 and the like)"),
)


def _address_class(text: str, *, loopback_allowed: bool, global_only: bool) -> str | None:
    """The class of address that refuses `text`, or None when it may be called."""
    address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is not the address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    if loopback_allowed and address.is_loopback:
        return None  # offline: 127.0.0.0/8 and ::1 are also "private" to ipaddress, and allowed all the same
    for attribute, name in _CLASSES:
        if getattr(address, attribute):
            return name
    if global_only and not address.is_global:
        return "not a public address (e.g. shared address space 100.64.0.0/10)"
    return None


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether `host` is on the allowlist: an entry names a host exactly, or `*.example.com` its subdomains."""
    host = host.rstrip(".").lower()
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True
        elif host == entry:
            return True
    return False


def parse_allowlist(text: str) -> tuple[str, ...]:
    """`CALLBACK_ALLOWED_HOSTS` as entries, lowercased, blanks dropped."""
    return tuple(entry.strip().rstrip(".").lower() for entry in text.split(",") if entry.strip())


@dataclass(frozen=True)
class UrlPolicy:
    """A stage's callback rules: deployed (https, the allowlist required, public addresses only) or offline."""

    deployed: bool
    allowed_hosts: tuple[str, ...] = ()
    resolver: Resolver = field(default=resolve, compare=False)

    @classmethod
    def of(cls, deployed: bool, allowed_hosts: str, resolver: Resolver = resolve) -> UrlPolicy:
        return cls(deployed, parse_allowlist(allowed_hosts), resolver)

    def check(self, url: str) -> Target:
        """The URL as a target whose every resolved address may be called.

        Raises:
            CallbackRefused: the first rule it breaks (`transient` when its host did not resolve).
        """
        schemes = ("https",) if self.deployed else ("https", "http")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in schemes or not parts.netloc:
            raise CallbackRefused(f"must be an absolute {' or '.join(schemes)} URL")
        if parts.username is not None or parts.password is not None:
            raise CallbackRefused("must not carry credentials (user:password@)")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise CallbackRefused("must name a host")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise CallbackRefused("must have a port from 1 to 65535, if any") from None
        if self.deployed and not self.allowed_hosts:
            raise CallbackRefused("callbacks are off on this stage: its CALLBACK_ALLOWED_HOSTS is empty")
        if self.allowed_hosts and not host_allowed(host, self.allowed_hosts):
            raise CallbackRefused(
                f"must name a host on this stage's CALLBACK_ALLOWED_HOSTS ({', '.join(self.allowed_hosts)})"
            )
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError):
            raise CallbackRefused(f"must name a host that resolves; {host!r} does not", transient=True) from None
        if not addresses:
            raise CallbackRefused(f"must name a host that resolves; {host!r} does not", transient=True)
        for address in addresses:
            refused_as = _address_class(address, loopback_allowed=not self.deployed, global_only=self.deployed)
            if refused_as is not None:
                raise CallbackRefused(f"must not resolve to a {refused_as} address; {host!r} resolves to {address}")
        path = parts.path or "/"
        return Target(scheme, host, port, f"{path}?{parts.query}" if parts.query else path, tuple(addresses))
