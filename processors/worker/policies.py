"""The catalog and policy in force, reloaded without a restart when their files change.

Reload is by watched file: every worker checks the modification time and size of
``PATCHGATE_CATALOG_FILE`` / ``PATCHGATE_POLICY_FILE`` (at most once per check interval) and swaps
in the new version only if it validates; a bad file is logged and the old version stays. The
timer (the worker holding the lease) then re-evaluates every server against the new version.

The policy file holds both the ``[classification]`` and the ``[enforcement]``/``[pauses]`` tables:
it is read and parsed once per load (:func:`load_policies`), so both halves always come from the same
version of the file, even when it is replaced between two reads.
"""

from __future__ import annotations

import logging
import os
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from processors.classify import Catalog, ClassificationPolicy, PolicyError, load_catalog
from processors.classify.policy import POLICY_FILE, TABLE, policy_from_mapping
from processors.enforcement.policy import EnforcementPolicy, enforcement_policy_from_mapping

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    catalog: Catalog
    classification: ClassificationPolicy
    enforcement: EnforcementPolicy
    version: str  # changes whenever any of the three changes


def _stamp(path: Path | None) -> tuple[float, int] | None:
    if path is None:
        return None
    stat = os.stat(path)
    return (stat.st_mtime, stat.st_size)


def load_policies(path: Path | None = None) -> tuple[ClassificationPolicy, EnforcementPolicy]:
    """Both policies of one policy file (the packaged one for None): one read, one TOML parse."""
    if path is None:
        text = resources.files("processors").joinpath("data", POLICY_FILE).read_text("utf-8")
        source = f"processors/data/{POLICY_FILE}"
    else:
        text, source = Path(path).read_text("utf-8"), str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(source, [f"invalid TOML: {error}"]) from None
    return policy_from_mapping(document.get(TABLE, {}), source=source), enforcement_policy_from_mapping(document)


class PolicySource:
    def __init__(self, policy_file: Path | None = None, catalog_file: Path | None = None,
                 check_interval: float = 2.0) -> None:
        self.policy_file = policy_file
        self.catalog_file = catalog_file
        self.check_interval = check_interval
        self._stamps = (_stamp(policy_file), _stamp(catalog_file))
        self._checked = time.monotonic()
        self.current = self._load()

    def _load(self) -> PolicySnapshot:
        catalog = load_catalog(self.catalog_file)
        classification, enforcement = load_policies(self.policy_file)
        return PolicySnapshot(catalog, classification, enforcement,
                              version=f"{catalog.sha256[:12]}:{self._stamps}")

    def maybe_reload(self) -> bool:
        """Reload if a watched file changed; True when a new version is now in force."""
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return False
        self._checked = now
        try:
            stamps = (_stamp(self.policy_file), _stamp(self.catalog_file))
        except OSError as error:
            log.error("cannot stat the policy/catalog file, keeping the loaded version: %s", error)
            return False
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            self.current = self._load()
        except Exception as error:  # a bad new file must not stop enforcement
            log.error("new policy/catalog rejected, keeping version %s: %s", self.current.version, error)
            return False
        log.info("policy/catalog reloaded: version %s", self.current.version)
        return True
