"""Build catalog, classification policy and Received-header classifier.

``classify(headers, connection, at)`` decides, from the topmost Received header of a message, which
server connected to the edge, its Exchange build and whether that build is ``current``, ``behind``
or ``unsupported`` (or why no judgement is possible: ``unknown_build``, ``not_exchange``,
``no_build``, ``cloud``). Every verdict names the rule that decided and the acceptable builds.
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
    server_key,
)
from processors.classify.decide import STATUSES, VULNERABLE_STATUSES, RecommendedBuild
from processors.classify.policy import Baseline, ClassificationPolicy, PolicyError, load_policy

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
    "RecommendedBuild",
    "build_bearing_hop",
    "check_catalog",
    "classify",
    "default_catalog",
    "default_policy",
    "format_long",
    "format_short",
    "load_catalog",
    "load_policy",
    "parse_build",
    "product_for_build",
    "server_key",
]
