"""The policy file, loaded and validated in one place, and kept current while a process runs.

The worker (:mod:`processors.worker.policies`: the policy file with the catalogs) and the API (the
stage table, pause quota and shadow mode it shows) both load the policy file with
:func:`load_policy_file`, so both accept and refuse the same files, and both keep it current with
:class:`HotReloaded`: the identity (inode), modification time and size of the watched files are
checked at most once per check interval; when they changed, the new version is loaded and swapped in
only if it validates, in one assignment, so a reader holds the old version or the new one, never a
mix. A file that fails is logged in one line and the version in force stays; both are counted in
``patchgate_policy_reloads_total{outcome}`` (``applied`` / ``rejected`` / ``unreadable``: the
files could not even be looked at, e.g. during a replacement that deleted them), and
``patchgate_policy_stale{kind}`` is 1 while the files on disk are not the version in force (the
alert ``PatchgatePolicyFileRejected`` fires on it).

The policy file holds the ``[classification]``/``[products]`` and the ``[enforcement]``/``[pauses]``/
``[shadow]`` tables: it is read and parsed once per load, so both halves always come from the same
version of the file, even when it is replaced between two reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import tomllib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from processors import metrics
from processors.classify import ClassificationPolicy, PolicyError
from processors.classify.policy import POLICY_FILE, policy_from_document
from processors.enforcement.policy import EnforcementPolicy, enforcement_policy_from_mapping
from processors.enforcement.policy import PolicyError as EnforcementPolicyError
from processors.settings import POLICY_CHECK_INTERVAL_S

log = logging.getLogger(__name__)

FileStamp = tuple[int, int, int, int]
Loaded = TypeVar("Loaded")


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """Both halves of one version of the policy file and the SHA-256 of its text."""

    classification: ClassificationPolicy
    enforcement: EnforcementPolicy
    digest: str


def file_stamp(path: Path | None) -> FileStamp | None:
    """What identifies a version of the file: the one the path leads to (symlinks followed).

    The inode matters when a file is replaced rather than written: a Kubernetes ConfigMap volume swaps
    its ``..data`` symlink to a new folder, and the new file may have the old one's size and mtime.
    """
    if path is None:
        return None
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def load_policy_file(path: Path | None = None) -> PolicyFile:
    """Both policies of one policy file (the packaged one for None): one read, one TOML parse.

    Raises :class:`PolicyError` (file, key, rule) when the file is invalid, ``OSError`` when unreadable.
    """
    if path is None:
        text = resources.files("processors").joinpath("data", POLICY_FILE).read_text("utf-8")
        source = f"processors/data/{POLICY_FILE}"
    else:
        text, source = Path(path).read_text("utf-8"), str(path)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(source, [f"invalid TOML: {error}"]) from None
    try:
        enforcement = enforcement_policy_from_mapping(document)
    except EnforcementPolicyError as error:  # named with the file, like the classification half's errors
        raise PolicyError(source, [str(error)]) from None
    return PolicyFile(policy_from_document(document, source=source), enforcement, digest)


def check_policy_file(path: Path | None) -> None:
    """Raise :class:`PolicyError` (one line: file, key, rule) unless the policy file loads."""
    try:
        load_policy_file(path)
    except OSError as error:
        raise unreadable(path, error) from None


def unreadable(path: Path | None, error: OSError) -> PolicyError:
    """The one-line error of a policy file that cannot be read."""
    return PolicyError(str(path), [f"cannot read: {error.strerror or error}"])


class HotReloaded(ABC, Generic[Loaded]):
    """A version loaded from watched files (``current``), replaced when they change and the new one loads."""

    #: What the log lines call the watched files ("policy", "policy/catalog").
    kind: ClassVar[str]

    def __init__(self, check_interval: float) -> None:
        self.check_interval = check_interval
        self._stamps = self._watched()
        self._checked = time.monotonic()
        self.current: Loaded = self._load()
        self._rejected = False  # the files as last seen (``_stamps``) failed to load
        self._stale = metrics.POLICY_STALE.labels(self.kind)
        self._stale.set(0)

    @abstractmethod
    def _watched(self) -> object:
        """What identifies the versions of the watched files (:func:`file_stamp`); raises ``OSError``."""

    @abstractmethod
    def _load(self) -> Loaded:
        """A new version, read and validated; raises when the files do not load."""

    @abstractmethod
    def describe(self, version: Loaded) -> str:
        """The version as the log lines name it."""

    def maybe_reload(self) -> bool:
        """:meth:`reload_if_changed`, at most once per check interval."""
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return False
        self._checked = now
        return self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Reload if a watched file changed; True when a new version is now in force."""
        try:
            stamps = self._watched()
        except OSError as error:
            log.error("cannot stat the %s file, keeping the loaded version: %s", self.kind, error)
            metrics.POLICY_RELOADS.labels("unreadable").inc()
            self._stale.set(1)
            return False
        if stamps == self._stamps:
            self._stale.set(1 if self._rejected else 0)  # (readable again, if it was not)
            return False
        self._stamps = stamps  # a file that fails is reported once, not at every check
        try:
            loaded = self._load()
        except Exception as error:  # a bad new file must not stop the process
            log.error("new %s rejected, keeping version %s: %s", self.kind, self.describe(self.current), error)
            metrics.POLICY_RELOADS.labels("rejected").inc()
            self._rejected = True
            self._stale.set(1)
            return False
        self.current = loaded
        log.info("%s reloaded: version %s", self.kind, self.describe(loaded))
        metrics.POLICY_RELOADS.labels("applied").inc()
        self._rejected = False
        self._stale.set(0)
        return True


class PolicyFileSource(HotReloaded[PolicyFile]):
    """The policy file alone (the packaged one for None), reloaded when it changes."""

    kind = "policy"

    def __init__(self, path: Path | None = None, check_interval: float = POLICY_CHECK_INTERVAL_S) -> None:
        self.path = path
        super().__init__(check_interval)

    @classmethod
    def at_start(cls, path: Path | None, check_interval: float) -> PolicyFileSource:
        """The source, else :class:`PolicyError` (one line), also for an unreadable file: for a command's start."""
        try:
            return cls(path, check_interval)
        except OSError as error:
            raise unreadable(path, error) from None

    def _watched(self) -> FileStamp | None:
        return file_stamp(self.path)

    def _load(self) -> PolicyFile:
        return load_policy_file(self.path)

    def describe(self, version: PolicyFile) -> str:
        return version.digest[:16]
