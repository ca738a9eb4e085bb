"""Build catalog, classification policy and Received-header classifier.

``classify(headers, connection, at)`` decides, from the topmost Received header of a message, which
server connected to the edge, its product (Exchange, or another mail server that stamps its
version: Exim, Sendmail, Domino, SMTPSVC, MDaemon, Kerio, CommuniGate, IceWarp) and version, and
whether that version is ``current``, ``behind`` or ``unsupported`` (or why no judgement is possible:
``unknown_build``, ``not_exchange``, ``no_build``, ``cloud``). Every verdict names the rule that
decided and the acceptable builds or versions.
"""

from processors.classify.catalog import (
    BuildRow,
    Catalog,
    CatalogError,
    CatalogFormatError,
    check_catalog,
    format_long,
    format_short,
    load_catalog,
    parse_build,
    product_for_build,
)
from processors.classify.classifier import (
    Classification,
    Connection,
    ContextHop,
    build_bearing_hop,
    classify,
    default_catalog,
    default_policy,
    default_products,
    server_key,
)
from processors.classify.decide import STATUSES, VULNERABLE_STATUSES, RecommendedBuild
from processors.classify.policy import Baseline, ClassificationPolicy, PolicyError, load_policy
from processors.classify.products import ProductCatalog, ProductCatalogError, check_products_file, load_products

__all__ = [
    "STATUSES",
    "VULNERABLE_STATUSES",
    "Baseline",
    "BuildRow",
    "Catalog",
    "CatalogError",
    "CatalogFormatError",
    "Classification",
    "ClassificationPolicy",
    "Connection",
    "ContextHop",
    "PolicyError",
    "ProductCatalog",
    "ProductCatalogError",
    "RecommendedBuild",
    "build_bearing_hop",
    "check_catalog",
    "check_products_file",
    "classify",
    "default_catalog",
    "default_policy",
    "default_products",
    "format_long",
    "format_short",
    "load_catalog",
    "load_policy",
    "load_products",
    "parse_build",
    "product_for_build",
    "server_key",
]
