"""A real Exim for the edge tests, in host-checking mode: ``exim -C CONFIG -bh CLIENT_IP``.

Host-checking mode runs one SMTP session from the given client IP on standard input and output,
with the configuration's ACLs (and their ``${readsocket}`` expansions) applied for real, and nothing
delivered. No daemon, no port. The binary is Debian's ``exim4`` unpacked by ``scripts/exim/fetch.sh``
into ``.cache/exim/root`` (installing Exim would remove Postfix), or an installed ``exim4``/``exim``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from processors.devservices.base import ServiceUnavailable

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UNPACKED = PROJECT_ROOT / ".cache" / "exim" / "root"
INSTALL_HINT = ("run `make test` or scripts/exim/fetch.sh as root "
                "(unpacks Debian's exim4-daemon-light into .cache/exim)")

#: What the host-checking session needs besides the ACLs under test: its own spool and log
#: directories, and a user that exists on any Debian machine.
BASE_CONFIG = """\
exim_user = nobody
exim_group = nogroup
primary_hostname = edge.patchgate.test
spool_directory = {spool}
log_file_path = {spool}/%slog
acl_smtp_rcpt = acl_check_rcpt
acl_smtp_data = acl_check_data

begin acl

acl_check_rcpt:
  accept

{acls}
"""


def exim_binary() -> tuple[Path, dict[str, str]]:
    """The Exim binary and the environment it runs in (the unpacked one needs its library path)."""
    unpacked = UNPACKED / "usr" / "sbin" / "exim4"
    if unpacked.is_file():
        libs = UNPACKED / "usr" / "lib" / "x86_64-linux-gnu"
        return unpacked, {**os.environ, "LD_LIBRARY_PATH": str(libs)}
    for name in ("exim4", "exim"):
        found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").is_file() else None)
        if found:
            return Path(found), dict(os.environ)
    raise ServiceUnavailable(f"Exim is not available: {INSTALL_HINT}")


class EximHostCheck:
    """Runs SMTP sessions through ``exim -bh`` with ``acls`` (the text after ``begin acl``)."""

    def __init__(self, acls: str) -> None:
        self.binary, self.env = exim_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="patchgate-exim-"))
        self.dir.chmod(0o755)  # Exim switches to its own user (nobody) before it uses the spool
        spool = self.dir / "spool"
        spool.mkdir()
        spool.chmod(0o777)
        self.config = self.dir / "exim.conf"
        self.config.write_text(BASE_CONFIG.format(spool=spool, acls=acls))

    def session(self, client_ip: str, commands: list[str], timeout: float = 30) -> list[str]:
        """Send ``commands`` (SMTP lines, DATA content included) from ``client_ip``; return the
        server's reply lines (debug lines that Exim's test mode prints are left out)."""
        script = "".join(f"{line}\r\n" for line in commands)
        done = subprocess.run([str(self.binary), "-C", str(self.config), "-bh", client_ip], input=script.encode(),
                              capture_output=True, timeout=timeout, env=self.env, check=False)
        lines = done.stdout.decode(errors="replace").splitlines()
        replies = [line for line in lines if line[:3].isdigit()]
        if not replies:
            raise RuntimeError(f"exim -bh answered nothing (rc={done.returncode}):\n"
                               f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}")
        return replies

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
