"""A throwaway Postfix instance for end-to-end tests and benchmarks: own config, queue and log in a temp directory.

It listens on 127.0.0.1:<free port>, relays mail for ``example.net`` to ``discard:`` and calls the
milters given. Started with ``postfix -c DIR start`` (root needed: Postfix drops to ``mail_owner``
postfix / ``setgid_group`` postdrop, which the Debian package created), stopped with
``postfix -c DIR stop`` and, should that fail, by killing the master PID from its own pid file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from processors.devservices import free_port
from processors.devservices.base import ServiceUnavailable, tcp_answers

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

MASTER_CF = """\
{listen} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class PostfixInstance:
    def __init__(self, milters: str, *, extra: dict[str, str] | None = None, parent: Path | None = None) -> None:
        if os.geteuid() != 0:
            raise ServiceUnavailable("Postfix must be started as root (it drops privileges itself): run as root")
        if not Path(POSTFIX).exists():
            raise ServiceUnavailable("postfix is not installed: apt-get install postfix (`make test` as root does)")
        # Not under pytest's 0700 tmp dirs: Postfix daemons run as 'postfix' and must reach the queue.
        self.dir = Path(tempfile.mkdtemp(prefix="patchgate-postfix-", dir=parent))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.maillog = self.dir / "maillog"
        self.milters = milters
        self.extra = extra or {}
        self.started = False

    @property
    def config_dir(self) -> Path:
        return self.dir / "etc"

    def write_config(self) -> None:
        etc = self.config_dir
        etc.mkdir()
        (self.dir / "queue").mkdir()
        (self.dir / "data").mkdir()
        os.chown(self.dir / "data", _uid("postfix"), 0)
        params = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.dir / "queue"),
            "data_directory": str(self.dir / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "edge.patchgate.test",
            "mydomain": "patchgate.test",
            "mydestination": "",
            "relay_domains": "example.net",
            "mynetworks": "127.0.0.0/8",
            "transport_maps": "inline:{ example.net=discard: }",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.dir),
            "smtpd_milters": self.milters,
            "milter_default_action": "accept",
            "milter_connect_timeout": "2s",
            "milter_command_timeout": "2s",
            "milter_content_timeout": "5s",
            "milter_protocol": "6",
            "smtputf8_enable": "no",
            "biff": "no",
            "smtpd_banner": "$myhostname ESMTP",
            "authorized_submit_users": "",
        }
        params.update(self.extra)
        (etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in params.items()))
        (etc / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))

    def _postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MAIL_CONFIG": str(self.config_dir)}
        return subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        result = self._postfix("start")
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                               f"{self.log_tail()}")
        self.started = True
        deadline = time.monotonic() + timeout
        while not tcp_answers("127.0.0.1", self.port):  # readiness probe, not a synchronisation sleep
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postfix did not listen on {self.port}:\n{self.log_tail()}")
            time.sleep(0.05)

    def master_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.dir / "queue" / "pid" / "master.pid").read_text().strip())
        return None

    def stop(self) -> None:
        if not self.started:
            return
        pid = self.master_pid()
        result = self._postfix("stop")
        if result.returncode != 0 and pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if pid:
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.started = False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.maillog.read_text(errors="replace").splitlines()[-lines:])
        return "(no maillog)"


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    # A zombie child of ours would still answer; master is not our child (postfix daemonises it).
    return True
