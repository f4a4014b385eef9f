"""Fixtures: the real data, a local HTTPS server serving it, and a hermetic environment.

Downloads are HTTPS only, so the local server speaks TLS with a certificate from a certificate
authority made for the test session (``trustme``), and ``SSL_CERT_FILE`` points the download
code at that authority instead of the system's: the code under test runs unchanged, with
certificate verification on.
"""

from __future__ import annotations

import functools
import http.server
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vaebench import testing
from vaebench.data import locate
from vaebench.data.download import FILES

Serve = Callable[..., str]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A certificate authority for this session, its certificate written to a PEM file."""
    trustme = pytest.importorskip(
        "trustme", reason="the download tests need trustme: pip install -e '.[test]'"
    )
    ca = trustme.CA()
    pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return ca, pem


@pytest.fixture(scope="session")
def shared_data(real_data_dir: Path) -> Path:
    """The real MNIST-family files (read-only); see ``real_data_dir`` in tests/conftest.py."""
    return real_data_dir


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, test_ca) -> None:  # type: ignore[no-untyped-def]
    """No test may reach a real mirror, the user's cache or a system data directory; HTTPS
    trusts the session's test authority only."""
    monkeypatch.setenv("VAEBENCH_MIRRORS", closed_port_url())
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca[1]))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("VAEBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(locate, "SYSTEM_ROOTS", ())
    # Nor a shared/data folder above the test's own temporary folder (a checkout's sibling
    # ../shared in /tmp would otherwise be found from every tmp_path there).
    beside = testing._shared_data_beside
    monkeypatch.setattr(
        testing,
        "_shared_data_beside",
        lambda near: [f for f in beside(near) if f.is_relative_to(tmp_path)],
    )


def closed_port_url(scheme: str = "https") -> str:
    """A URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}/"


@pytest.fixture
def closed_url() -> str:
    return closed_port_url()


@pytest.fixture
def link(shared_data: Path) -> Callable[..., Path]:
    """``link(dest_root, name, roles=())``: symlink real files into a directory we may write.

    Verification writes a sidecar beside the data, so tests never point it at the shared copy.
    """

    def make(dest_root: Path, name: str, roles: tuple[str, ...] = ()) -> Path:
        directory = dest_root / name
        directory.mkdir(parents=True, exist_ok=True)
        for role, fname in FILES.items():
            if not roles or role in roles:
                (directory / fname).symlink_to(shared_data / name / fname)
        return directory

    return make


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class TruncatingHandler(QuietHandler):
    """Announces the full Content-Length, sends half the body, then drops the connection."""

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True


class EndlessHandler(QuietHandler):
    """Sends bytes without a Content-Length until the client hangs up."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        block = b"\0" * 65536
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass
        self.close_connection = True


def redirecting_handler(target: str) -> type[QuietHandler]:
    """A handler answering every GET with a 302 to ``target`` + the requested path."""

    class Redirect(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target + self.path.lstrip("/"))
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Redirect


class QuietServer(http.server.ThreadingHTTPServer):
    """A client hanging up mid-body or refusing the certificate is what some tests do."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


HANDLERS: dict[str, type[QuietHandler]] = {
    "files": QuietHandler,
    "truncate": TruncatingHandler,
    "endless": EndlessHandler,
}


@pytest.fixture
def serve(test_ca) -> Iterator[Serve]:  # type: ignore[no-untyped-def]
    """``serve(directory, truncate=False, tls=True, mode="files", redirect=None) -> base URL``
    of a server on 127.0.0.1: HTTPS with a certificate of the session's test authority, or
    plain HTTP with ``tls=False``; ``mode`` picks a misbehaving handler; ``redirect`` answers
    every request with a redirect to that base URL."""
    servers: list[QuietServer] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca[0].issue_cert("127.0.0.1").configure_cert(context)

    def start(
        directory: Path,
        truncate: bool = False,
        tls: bool = True,
        mode: str = "files",
        redirect: str | None = None,
    ) -> str:
        handler = HANDLERS["truncate" if truncate else mode]
        if redirect is not None:
            handler = redirecting_handler(redirect)
        factory = functools.partial(handler, directory=str(directory))
        server = QuietServer(("127.0.0.1", 0), factory)
        if tls:
            # Each connection's handshake runs in its own thread, not in the accept loop.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mnist_url(serve: Serve, shared_data: Path) -> str:
    return serve(shared_data / "mnist")
