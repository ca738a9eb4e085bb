"""Postfix SMTP access policy delegation protocol: ``name=value`` lines ending with an empty line.

:class:`PolicyDecoder` is incremental and safe against arbitrary split reads; it enforces a line
length and a request size limit (:class:`PolicyProtocolError` -> the caller logs, sends nothing and
disconnects, as SMTPD_POLICY_README asks). Unknown attributes are kept in the dict and ignored by
the service; a repeated attribute keeps its last value. Lines may end in ``\\n`` or ``\\r\\n``. An empty
line with no attribute before it is not a request (:class:`EmptyPolicyRequest`, a protocol error):
answering it would let a client get a reply line for every newline it sends.
"""

from __future__ import annotations

from typing import Final

from processors.errors import PatchgateError

DEFAULT_MAX_REQUEST: Final = 32 * 1024  # a Postfix request is typically < 1 KiB
DEFAULT_MAX_LINE: Final = 8 * 1024
DEFAULT_MAX_ATTRIBUTES: Final = 200


class PolicyProtocolError(PatchgateError):
    """The client broke the protocol; close the connection without replying."""


class EmptyPolicyRequest(PolicyProtocolError):
    """An empty line where a request should start."""


class PolicyDecoder:
    """``for request in decoder.feed(data): ...``; each request is a ``dict[str, str]``."""

    __slots__ = ("_attrs", "_buf", "_size", "max_attributes", "max_line", "max_request")

    def __init__(self, max_request: int = DEFAULT_MAX_REQUEST, max_line: int = DEFAULT_MAX_LINE,
                 max_attributes: int = DEFAULT_MAX_ATTRIBUTES) -> None:
        self._buf = b""
        self._attrs: dict[str, str] = {}
        self._size = 0
        self.max_request = max_request
        self.max_line = max_line
        self.max_attributes = max_attributes

    @property
    def in_request(self) -> bool:
        """True while a request has started but its empty line has not arrived."""
        return bool(self._attrs) or bool(self._buf)

    def feed(self, data: bytes) -> list[dict[str, str]]:
        buf = self._buf + data if self._buf else data
        out: list[dict[str, str]] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            self._size += len(line) + 1
            if self._size > self.max_request:
                raise PolicyProtocolError(f"request exceeds {self.max_request} bytes")
            if not line:
                if not self._attrs:
                    raise EmptyPolicyRequest("empty request (an empty line without attributes)")
                out.append(self._attrs)
                self._attrs = {}
                self._size = 0
                continue
            self._line(line)
        rest = buf[start:]
        if len(rest) > self.max_line:
            raise PolicyProtocolError(f"line exceeds {self.max_line} bytes without a newline")
        if self._size + len(rest) > self.max_request:
            raise PolicyProtocolError(f"request exceeds {self.max_request} bytes")
        self._buf = rest
        return out

    def finish(self) -> dict[str, str] | None:
        """At EOF: the request in progress if it has attributes (Exim's readsocket may end a request
        by shutting down its write side instead of sending the empty line), else None."""
        if self._buf:
            line = self._buf[:-1] if self._buf.endswith(b"\r") else self._buf
            self._buf = b""
            if line:
                self._line(line)
        attrs, self._attrs, self._size = self._attrs, {}, 0
        return attrs or None

    def _line(self, line: bytes) -> None:
        if len(line) > self.max_line:
            raise PolicyProtocolError(f"line exceeds {self.max_line} bytes")
        eq = line.find(b"=")
        if eq <= 0:
            raise PolicyProtocolError(f"not a name=value line: {line[:60]!r}")
        if len(self._attrs) >= self.max_attributes:
            raise PolicyProtocolError(f"more than {self.max_attributes} attributes")
        name = line[:eq].decode("ascii", "replace")
        self._attrs[name] = line[eq + 1:].decode("utf-8", "replace")


def encode_request(attrs: dict[str, str]) -> bytes:
    """A request as Postfix sends it (tests and drivers)."""
    return b"".join(f"{k}={v}\n".encode() for k, v in attrs.items()) + b"\n"


def encode_action(action: str) -> bytes:
    """``action=<action>`` + empty line; ``action`` must be one line."""
    if "\n" in action or "\r" in action or "\0" in action:
        raise ValueError("a policy action must be a single line")
    return b"action=" + action.encode("utf-8") + b"\n\n"
