"""The callback request goes to the address that was checked, keeping the URL's host for `Host`, SNI
and the certificate check; it never follows a redirect and never outlives its deadline.

A TLS server on 127.0.0.1 holds a certificate for hooks.example.com, which no DNS resolves here:
only a connection pinned to the checked address, speaking the name, can complete the exchange.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.callbacks.delivery import DeliveryFailed, post
from chalicelib.callbacks.url import Target

NAME = "hooks.example.com"


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Seen:
    def __init__(self) -> None:
        self.sni: list[str | None] = []
        self.hosts: list[str] = []
        self.answer: tuple[int, dict[str, str]] = (204, {})
        self.delay = 0.0


def serve(seen: Seen, tls: ssl.SSLContext | None) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.hosts.append(self.headers["Host"])
            time.sleep(seen.delay)
            status, headers = seen.answer
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Seen, int, Path]]:
    cert, key = certificate(tmp_path, NAME)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen = Seen()

    def remember(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        seen.sni.append(server_name)

    context.sni_callback = remember  # type: ignore[assignment]
    for port in serve(seen, context):
        yield seen, port, cert


def target(port: int, scheme: str = "https", host: str = NAME) -> Target:
    return Target(scheme, host, port, "/hook?x=1", ("127.0.0.1",))


def test_an_https_delivery_connects_to_the_checked_address_and_speaks_the_url_s_host(
    tls_server: tuple[Seen, int, Path],
) -> None:
    seen, port, cert = tls_server
    trusted = ssl.create_default_context(cafile=str(cert))
    answer = post(target(port), b"{}", {}, 5, tls=trusted)
    assert answer.status == 204
    assert seen.sni == [NAME] and seen.hosts == [f"{NAME}:{port}"]


def test_a_certificate_for_another_name_fails_the_delivery(tmp_path: Path, tls_server: tuple[Seen, int, Path]) -> None:
    seen, port, _ = tls_server
    other, _ = certificate(tmp_path, "other.example.com")
    with pytest.raises(DeliveryFailed):
        post(target(port), b"{}", {}, 5, tls=ssl.create_default_context(cafile=str(other)))
    assert seen.hosts == []


def test_a_redirect_is_answered_as_it_is_and_never_followed() -> None:
    seen = Seen()
    seen.answer = (307, {"Location": "http://169.254.169.254/latest/meta-data/"})
    for port in serve(seen, None):
        answer = post(target(port, "http", "127.0.0.1"), b"{}", {}, 5)
    assert (answer.status, answer.location) == (307, "http://169.254.169.254/latest/meta-data/")
    assert len(seen.hosts) == 1


def test_a_slow_answer_fails_at_the_deadline_not_after_it() -> None:
    seen = Seen()
    seen.delay = 3
    for port in serve(seen, None):
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match=r"no answer from 127\.0\.0\.1 within 0\.3 s"):
            post(target(port, "http", "127.0.0.1"), b"{}", {}, 0.3)
        assert time.monotonic() - started < 2


def test_an_address_that_refuses_the_connection_is_skipped_for_the_next_checked_one() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
    seen = Seen()
    for port in serve(seen, None):
        # The server listens on 127.0.0.1 only: 127.0.0.2 refuses, and the next checked address is tried.
        both = Target("http", "127.0.0.1", port, "/", ("127.0.0.2", "127.0.0.1"))
        assert post(both, b"{}", {}, 5).status == 204
        assert len(seen.hosts) == 1
        with pytest.raises(DeliveryFailed, match="no connection"):
            post(Target("http", "127.0.0.1", refused_port, "/", ("127.0.0.1",)), b"{}", {}, 5)
