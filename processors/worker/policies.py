"""The catalog and policy in force, reloaded without a restart when their files change.

Reload is by watched file: every worker checks the identity (inode), modification time and size of
``PATCHGATE_CATALOG_FILE`` / ``PATCHGATE_POLICY_FILE`` and of the ``*.csv`` files of
``PATCHGATE_PRODUCTS_DIR`` (at most once per check interval) and swaps
in the new version only if it validates; a bad file is logged and the old version stays. The
timer (the worker holding the lease) then re-evaluates every server against the new version.

The policy file holds the ``[classification]``/``[products]`` and the ``[enforcement]``/``[pauses]`` tables:
it is read and parsed once per load (:func:`load_policies`), so both halves always come from the same
version of the file, even when it is replaced between two reads.

``PolicySnapshot.content`` names what the files say (their digests), unlike ``version``, which also
changes when a file is only touched: the timer records in the state store the content its servers
were last judged under, so a reload whose re-evaluation a crash interrupted is completed by whichever
worker runs the timer next (:meth:`processors.worker.runtime.WorkerRuntime.tick`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from processors.classify import Catalog, ClassificationPolicy, PolicyError, load_catalog
from processors.classify.policy import POLICY_FILE, policy_from_document
from processors.classify.products import ProductCatalog, load_products
from processors.enforcement.policy import EnforcementPolicy, enforcement_policy_from_mapping
from processors.enforcement.policy import PolicyError as EnforcementPolicyError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    catalog: Catalog
    classification: ClassificationPolicy
    enforcement: EnforcementPolicy
    version: str  # changes whenever any of them changes
    products: ProductCatalog
    content: str = ""  # digests of the policy file and both catalogs: changes only when what they say does


#: The most product files a watched folder may hold (one per product; a bound on the stat calls).
MAX_PRODUCT_FILES = 64


def _stamp(path: Path | None) -> tuple[int, int, int, int] | None:
    """What identifies a version of the file: the one the path leads to (symlinks followed).

    The inode matters when a file is replaced rather than written: a Kubernetes ConfigMap volume swaps
    its ``..data`` symlink to a new folder, and the new file may have the old one's size and mtime.
    """
    if path is None:
        return None
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _folder_stamp(folder: Path | None) -> tuple[tuple[str, tuple[int, int, int, int] | None], ...] | None:
    """Name and :func:`_stamp` of every ``*.csv`` of ``folder`` (at most MAX_PRODUCT_FILES)."""
    if folder is None:
        return None
    names = sorted(p for p in os.listdir(folder) if p.endswith(".csv"))[:MAX_PRODUCT_FILES]
    return tuple((name, _stamp(folder / name)) for name in names)


def load_policies(path: Path | None = None) -> tuple[ClassificationPolicy, EnforcementPolicy]:
    """Both policies of one policy file (the packaged one for None): one read, one TOML parse."""
    classification, enforcement, _ = _load_policy_file(path)
    return classification, enforcement


def check_policy_file(path: Path | None) -> None:
    """Raise :class:`PolicyError` (one line: file, key, rule) unless the policy file loads."""
    try:
        load_policies(path)
    except OSError as error:
        raise PolicyError(str(path), [f"cannot read: {error.strerror or error}"]) from None


def _load_policy_file(path: Path | None) -> tuple[ClassificationPolicy, EnforcementPolicy, str]:
    """Both policies of one policy file and the SHA-256 of its text."""
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
    return policy_from_document(document, source=source), enforcement, digest


class PolicySource:
    def __init__(self, policy_file: Path | None = None, catalog_file: Path | None = None,
                 check_interval: float = 2.0, *, products_dir: Path | None = None) -> None:
        self.policy_file = policy_file
        self.catalog_file = catalog_file
        self.products_dir = products_dir
        self.check_interval = check_interval
        self._stamps = self._watched()
        self._checked = time.monotonic()
        self.current = self._load()

    def _load(self) -> PolicySnapshot:
        catalog = load_catalog(self.catalog_file)
        classification, enforcement, policy_digest = _load_policy_file(self.policy_file)
        products = load_products(self.products_dir)
        return PolicySnapshot(catalog, classification, enforcement,
                              version=f"{catalog.sha256[:12]}:{products.sha256[:12]}:{self._stamps}",
                              products=products,
                              content=f"{policy_digest[:16]}:{catalog.sha256[:16]}:{products.sha256[:16]}")

    def _watched(self) -> tuple[object, ...]:
        return (_stamp(self.policy_file), _stamp(self.catalog_file), _folder_stamp(self.products_dir))

    def maybe_reload(self) -> bool:
        """Reload if a watched file changed; True when a new version is now in force."""
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return False
        self._checked = now
        try:
            stamps = self._watched()
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
