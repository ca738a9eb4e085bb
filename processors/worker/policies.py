"""The catalog and policy in force, reloaded without a restart when their files change.

Reload is by watched file (:class:`processors.policyfile.HotReloaded`, shared with the API): every
worker checks the identity (inode), modification time and size of ``PATCHGATE_CATALOG_FILE`` /
``PATCHGATE_POLICY_FILE`` and of the ``*.csv`` files of ``PATCHGATE_PRODUCTS_DIR`` (at most once per
check interval) and swaps in the new version only if it validates; a bad file is logged and the old
version stays. The timer (the worker holding the lease) then re-evaluates every server against the
new version.

The policy file is loaded by :func:`processors.policyfile.load_policy_file`: one read and one parse
per load, so its ``[classification]``/``[products]`` and ``[enforcement]``/``[pauses]`` halves always
come from the same version of the file.

``PolicySnapshot.content`` names what the files say (their digests), unlike ``version``, which also
changes when a file is only touched: the timer records in the state store the content its servers
were last judged under, so a reload whose re-evaluation a crash interrupted is completed by whichever
worker runs the timer next (:meth:`processors.worker.runtime.WorkerRuntime.tick`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from processors.classify import Catalog, ClassificationPolicy, load_catalog
from processors.classify.products import ProductCatalog, load_products
from processors.enforcement.policy import EnforcementPolicy
from processors.policyfile import (
    FileStamp,
    HotReloaded,
    check_policy_file,
    file_stamp,
    load_policy_file,
)
from processors.settings import POLICY_CHECK_INTERVAL_S

__all__ = ["MAX_PRODUCT_FILES", "PolicySnapshot", "PolicySource", "check_policy_file", "load_policies"]


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


def _folder_stamp(folder: Path | None) -> tuple[tuple[str, FileStamp | None], ...] | None:
    """Name and :func:`file_stamp` of every ``*.csv`` of ``folder`` (at most MAX_PRODUCT_FILES)."""
    if folder is None:
        return None
    names = sorted(p for p in os.listdir(folder) if p.endswith(".csv"))[:MAX_PRODUCT_FILES]
    return tuple((name, file_stamp(folder / name)) for name in names)


def load_policies(path: Path | None = None) -> tuple[ClassificationPolicy, EnforcementPolicy]:
    """Both policies of one policy file (the packaged one for None): one read, one TOML parse."""
    loaded = load_policy_file(path)
    return loaded.classification, loaded.enforcement


class PolicySource(HotReloaded[PolicySnapshot]):
    kind = "policy/catalog"

    def __init__(self, policy_file: Path | None = None, catalog_file: Path | None = None,
                 check_interval: float = POLICY_CHECK_INTERVAL_S, *, products_dir: Path | None = None) -> None:
        self.policy_file = policy_file
        self.catalog_file = catalog_file
        self.products_dir = products_dir
        super().__init__(check_interval)

    def _load(self) -> PolicySnapshot:
        catalog = load_catalog(self.catalog_file)
        policy = load_policy_file(self.policy_file)
        products = load_products(self.products_dir)
        return PolicySnapshot(catalog, policy.classification, policy.enforcement,
                              version=f"{catalog.sha256[:12]}:{products.sha256[:12]}:{self._stamps}",
                              products=products,
                              content=f"{policy.digest[:16]}:{catalog.sha256[:16]}:{products.sha256[:16]}")

    def _watched(self) -> tuple[object, ...]:
        return (file_stamp(self.policy_file), file_stamp(self.catalog_file), _folder_stamp(self.products_dir))

    def describe(self, version: PolicySnapshot) -> str:
        return version.version
