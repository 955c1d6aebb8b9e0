"""The callback URL rules (chalicelib/callbacks/url.py) and the signature (signing.py), without AWS or a network.

The resolver is a fake: a name resolves to whatever the test says, as DNS could (and, between
publish and delivery, could change its answer).
"""

from __future__ import annotations

import hashlib
import hmac
import socket

import pytest

from chalicelib.callbacks.signing import SigningKeys, signature_header, verify
from chalicelib.callbacks.url import CallbackRefused, UrlPolicy, host_allowed

ALLOWED = "hooks.example.com, *.partner.example"


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolver


def deployed(*addresses: str, allowed: str = ALLOWED) -> UrlPolicy:
    return UrlPolicy.of(True, allowed, resolving_to(*addresses or ("93.184.216.34",)))


def refusal(policy: UrlPolicy, url: str) -> CallbackRefused:
    with pytest.raises(CallbackRefused) as refused:
        policy.check(url)
    return refused.value


@pytest.mark.parametrize(
    ("address", "named"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),
    ],
)
def test_a_deployed_stage_refuses_each_address_class_a_callback_host_resolves_to(address: str, named: str) -> None:
    refused = refusal(deployed(address), "https://hooks.example.com/done")
    assert named in refused.rule and address in refused.rule and not refused.transient


def test_one_forbidden_address_among_public_ones_refuses_the_url() -> None:
    refused = refusal(deployed("93.184.216.34", "10.1.2.3"), "https://hooks.example.com/")
    assert "private" in refused.rule


def test_a_deployed_stage_takes_an_https_url_on_its_allowlist_resolving_to_public_addresses() -> None:
    target = deployed("93.184.216.34", "2606:2800:220:1::1").check("https://Hooks.Example.com:8443/a/b?x=1#frag")
    assert (target.scheme, target.host, target.port, target.path) == ("https", "hooks.example.com", 8443, "/a/b?x=1")
    assert target.addresses == ("93.184.216.34", "2606:2800:220:1::1")


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://hooks.example.com/", "absolute https URL"),
        ("hooks.example.com/x", "absolute https URL"),
        ("https://user:secret@hooks.example.com/", "credentials"),
        ("https://hooks.example.com:99999/", "port"),
        ("https://evil.example.com/", "CALLBACK_ALLOWED_HOSTS"),
        ("https://partner.example/", "CALLBACK_ALLOWED_HOSTS"),  # a wildcard names subdomains, not its apex
        ("https://hooks.example.com.evil.net/", "CALLBACK_ALLOWED_HOSTS"),
    ],
)
def test_a_deployed_stage_refuses_urls_that_break_its_rules(url: str, rule: str) -> None:
    assert rule in refusal(deployed(), url).rule


def test_an_empty_allowlist_turns_callbacks_off_on_a_deployed_stage() -> None:
    assert "callbacks are off" in refusal(deployed(allowed=""), "https://hooks.example.com/").rule


def test_a_host_that_does_not_resolve_is_refused_as_transient() -> None:
    def nothing(host: str, port: int) -> list[str]:
        raise socket.gaierror("no such name")

    refused = refusal(UrlPolicy.of(True, ALLOWED, nothing), "https://hooks.example.com/")
    assert refused.transient and "resolves" in refused.rule


def test_offline_http_and_loopback_are_allowed_but_the_metadata_address_is_not() -> None:
    offline = UrlPolicy.of(False, "", resolving_to("127.0.0.1"))
    assert offline.check("http://localhost:8123/hook").addresses == ("127.0.0.1",)
    assert "link-local" in refusal(UrlPolicy.of(False, "", resolving_to("169.254.169.254")), "http://x/").rule


def test_wildcards_match_subdomains_at_any_depth_and_exact_entries_match_only_themselves() -> None:
    entries = ("hooks.example.com", "*.partner.example")
    assert host_allowed("a.b.partner.example", entries)
    assert host_allowed("hooks.example.com.", entries)
    assert not host_allowed("xpartner.example", entries)
    assert not host_allowed("sub.hooks.example.com", entries)


def test_the_signature_is_the_hex_hmac_sha256_of_the_timestamp_a_dot_and_the_body() -> None:
    key, body = b"k" * 32, b'{"id":"a","status":"COMPLETED"}'
    header = signature_header(key, 1_764_590_400, body)
    expected = hmac.new(key, b"1764590400." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1764590400,v1={expected}"
    assert verify(key, header, body, now=1_764_590_400 + 299)
    assert not verify(key, header, body, now=1_764_590_400 + 301)
    assert not verify(b"j" * 32, header, body, now=1_764_590_400)
    assert not verify(key, header, body + b"x", now=1_764_590_400)
    assert not verify(key, "t=abc,v1=00", body, now=1_764_590_400)


class _Secrets:
    def __init__(self) -> None:
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.reads += 1
        return {"SecretString": "s" * 64}


def test_the_signing_key_is_read_from_the_named_secret_once_per_container() -> None:
    secrets = _Secrets()
    keys = SigningKeys("taskproc-dev-callback", None, lambda: secrets)
    assert keys.key() == b"s" * 64 and keys.key() == b"s" * 64
    assert secrets.reads == 1


def test_offline_the_signing_key_is_the_setting_s_value() -> None:
    assert SigningKeys(None, "v" * 40, lambda: None).key() == b"v" * 40
