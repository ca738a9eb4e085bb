"""A throwaway Redis server reachable only over TLS, with an ACL user, for the TLS and ACL tests.

At start it makes its own certificate authority and a server certificate for 127.0.0.1 /
localhost (``openssl`` command line tool) in its temp folder, disables the plain-text port and the
``default`` user, and creates one ACL user with all rights. :attr:`RedisTlsServer.url` is the
``rediss://user:password@.../0?ssl_ca_certs=<ca>`` URL that reaches it; :meth:`close` deletes the
folder (keys and certificates included).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from processors.devservices.base import ServiceUnavailable, free_port
from processors.devservices.redis_server import RedisServer

USER = "patchgate"


def make_certificates(folder: Path) -> None:
    """``ca.pem`` and ``server.pem`` / ``server.key`` (for 127.0.0.1 and localhost) in ``folder``."""
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=patchgate redis test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost")
    _openssl(folder, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext")


def tls_server_args(folder: Path, port: int) -> list[str]:
    """redis-server arguments: TLS only on ``port`` (plain text off) with the certificates of
    :func:`make_certificates` in ``folder``, no client certificates asked, replication over TLS."""
    return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(folder / "server.pem"),
            "--tls-key-file", str(folder / "server.key"), "--tls-ca-cert-file", str(folder / "ca.pem"),
            "--tls-auth-clients", "no", "--tls-replication", "yes"]


def _openssl(folder: Path, *args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServiceUnavailable("the openssl command line tool is needed to make test certificates")
    done = subprocess.run([openssl, *args], cwd=folder, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise ServiceUnavailable(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")


class RedisTlsServer:
    """Redis on a TLS port only; clients log in as :data:`USER` with :attr:`password`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="patchgate-redis-tls-"))
        self.password = secrets.token_urlsafe(18)
        self.port = free_port()
        self.ca_file = self.folder / "ca.pem"
        self.url = f"rediss://{USER}:{self.password}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"
        self.server: RedisServer | None = None

    def start(self, timeout: float = 15.0) -> None:
        make_certificates(self.folder)
        self.server = RedisServer(self.port, name="redis-tls", probe=self._answers, extra_args=[
            *tls_server_args(self.folder, self.port), "--user", "default", "off",
            "--user", USER, "on", f">{self.password}", "~*", "&*", "+@all"])
        self.server.start(timeout)

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)
