"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line tool."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate (PEM)
    server_certificate: Path
    server_key: Path  # PKCS#8, unencrypted
    server_keystore: Path  # key + certificate chain in one PEM file (Kafka's ssl.keystore.type=PEM)
    client_certificate: Path
    client_key: Path  # PKCS#8, encrypted with client_key_password
    client_key_password: str


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command line tool is needed to make test certificates"
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def make_tls_files(folder: Path, client_key_password: str = "client-key-passphrase") -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 / localhost and a client certificate, signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=patchgate throwaway test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _issue(folder, "server", "/CN=localhost", ["-nodes"])
    _issue(folder, "client", "/CN=patchgate-client", ["-passout", f"pass:{client_key_password}"])
    keystore = folder / "server-keystore.pem"
    keystore.write_text((folder / "server.key").read_text() + (folder / "server.pem").read_text())
    return TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key", keystore,
                    folder / "client.pem", folder / "client.key", client_key_password)


def _issue(folder: Path, name: str, subject: str, key_options: list[str]) -> None:
    _openssl("req", "-newkey", "rsa:2048", *key_options, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)
