"""Fixtures: the shared real data, a local HTTP server serving it, and a hermetic environment."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vaebench.data import locate
from vaebench.data.download import FILES

Serve = Callable[..., str]


def _shared_data_dir() -> Path:
    env = os.environ.get("VAEBENCH_TEST_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real MNIST-family files; never write into it (tests run as root in CI)."""
    root = _shared_data_dir()
    missing = [
        str(root / ds / f) for ds in ("mnist", "fashion-mnist") for f in FILES.values()
        if not (root / ds / f).is_file()
    ]  # fmt: skip
    if missing:
        pytest.fail(
            f"Real test data missing: {', '.join(missing)}. Set VAEBENCH_TEST_DATA to a folder "
            f"holding mnist/ and fashion-mnist/ with the four IDX .gz files each.",
            pytrace=False,
        )
    return root


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may reach a real mirror, the user's cache or a system data directory."""
    monkeypatch.setenv("VAEBENCH_MIRRORS", closed_port_url())
    monkeypatch.delenv("VAEBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(locate, "SYSTEM_ROOTS", ())


def closed_port_url() -> str:
    """A URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def closed_url() -> str:
    return closed_port_url()


@pytest.fixture
def link(shared_data: Path) -> Callable[..., Path]:
    """``link(dest_root, name, roles=())``: symlink shared files into a directory we may write.

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


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(directory, truncate=False) -> base URL`` of a server on 127.0.0.1."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path, truncate: bool = False) -> str:
        handler = TruncatingHandler if truncate else QuietHandler
        factory = functools.partial(handler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mnist_url(serve: Serve, shared_data: Path) -> str:
    return serve(shared_data / "mnist")
