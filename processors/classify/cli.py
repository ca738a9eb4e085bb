"""``patchgate classify`` and ``patchgate catalog show|check``.

``register(subparsers)`` is called by :mod:`processors.cli`; every subcommand sets ``handler``.
Exit codes: 0 success (whatever the classification status), 1 ``catalog check`` found errors,
2 unreadable input or invalid ``--catalog``/``--policy``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from processors.classify.catalog import Catalog, CatalogFormatError, check_catalog, load_catalog
from processors.classify.classifier import Connection, classify, default_catalog, default_policy, default_products
from processors.classify.policy import ClassificationPolicy, PolicyError, load_policy
from processors.classify.products import (
    PRODUCT_COLUMNS,
    PRODUCT_NAMES,
    ProductCatalog,
    ProductCatalogError,
    ProductRelease,
    check_products_file,
    load_products,
)
from processors.errors import PatchgateError

#: The CLI reads at most this many bytes of input (a header block is far smaller).
MAX_INPUT_BYTES = 64 * 1024 * 1024


class InputError(PatchgateError):
    """Unreadable input: reported on stderr, exit 2."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``classify`` and ``catalog`` subcommands."""
    p = subparsers.add_parser(
        "classify",
        help="classify the sending server of one message from its header block",
        description=(
            "Read an RFC 5322 header block (or just its Received lines) and print one JSON object: "
            "server, build, product, status, rule, reason, recommended_builds, hop. The header block "
            "ends at the first empty line. Exit status is 0 whatever the classification."
        ),
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE", help="header file, '-' = stdin (default)")
    p.add_argument("--at", help="observation day YYYY-MM-DD or ISO datetime (default: now, UTC)")
    p.add_argument("--helo", help="the client's HELO/EHLO name (server name fallback)")
    p.add_argument("--ip", default="", help="the client's IP address (last server name fallback)")
    p.add_argument("--catalog", metavar="FILE", help="build catalog CSV (default: packaged)")
    p.add_argument("--policy", metavar="FILE", help="policy TOML (default: packaged)")
    p.add_argument("--products-dir", metavar="DIR", help="folder of product catalogs <product>.csv (default: packaged)")
    p.add_argument("--pretty", action="store_true", help="indent the JSON output")
    p.set_defaults(handler=cmd_classify)

    c = subparsers.add_parser("catalog", help="show or check the Exchange build catalog and the product catalogs")
    csub = c.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    show = csub.add_parser(
        "show", help="print the loaded catalogs' versions, or one product's releases (--product)"
    )
    show.add_argument("--catalog", metavar="FILE", help="build catalog CSV (default: packaged)")
    show.add_argument("--products-dir", metavar="DIR", help="folder of product catalogs (default: packaged)")
    show.add_argument("--product", metavar="ID", help=f"list one product's releases ({', '.join(PRODUCT_NAMES)})")
    show.set_defaults(handler=cmd_catalog_show)
    check = csub.add_parser(
        "check", help="validate an Exchange build catalog CSV or a product catalog CSV (exit 1 if it has errors)"
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=cmd_catalog_check)


# ------------------------------------------------------------------------------------------ helpers


def _err(msg: str) -> None:
    print(f"patchgate: {msg}", file=sys.stderr)


def read_input(name: str) -> bytes:
    """Read ``name`` ('-' = stdin) as bytes; raise :class:`InputError` if unreadable or empty."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES)
        else:
            path = Path(name)
            if path.is_dir():
                raise InputError(f"{name}: is a directory")
            with path.open("rb") as fh:
                data = fh.read(MAX_INPUT_BYTES)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise InputError(f"{'stdin' if name == '-' else name}: empty input")
    return data


def parse_header_block(text: str) -> list[tuple[str, str]]:
    """Split a header block into (name, value) pairs, topmost first.

    Stops at the first empty line; continuation lines (starting with space or tab) are folded back
    onto the previous field with CRLF; a leading mbox ``From `` line and lines without a colon are
    skipped.
    """
    headers: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if headers:
                break
            continue
        if line[0] in " \t":
            if headers:
                name, value = headers[-1]
                headers[-1] = (name, value + "\r\n" + line)
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            continue
        headers.append((name.strip(), value.strip()))
    return headers


def _parse_at(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"--at: expected YYYY-MM-DD or an ISO datetime, got {text!r}") from exc
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _load_products(folder: str | None) -> ProductCatalog:
    try:
        return load_products(folder) if folder else default_products()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--products-dir {folder}: cannot read: {exc}") from exc
    except ProductCatalogError as exc:
        raise InputError(str(exc)) from exc


def _load(catalog_path: str | None, policy_path: str | None) -> tuple[Catalog, ClassificationPolicy]:
    try:
        catalog = load_catalog(catalog_path) if catalog_path else default_catalog()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--catalog {catalog_path}: cannot read: {exc}") from exc
    except CatalogFormatError as exc:
        raise InputError(str(exc)) from exc
    try:
        policy = load_policy(policy_path) if policy_path else default_policy()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--policy {policy_path}: cannot read: {exc}") from exc
    except PolicyError as exc:
        raise InputError(str(exc)) from exc
    return catalog, policy


def _dump(obj: Any, pretty: bool = False) -> None:
    option = orjson.OPT_INDENT_2 if pretty else 0
    sys.stdout.write(orjson.dumps(obj, option=option).decode() + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------ commands


def cmd_classify(args: argparse.Namespace) -> int:
    try:
        at = _parse_at(args.at)
        catalog, policy = _load(args.catalog, args.policy)
        products = _load_products(args.products_dir)
        data = read_input(args.file)
    except InputError as exc:
        _err(str(exc))
        return 2
    headers = parse_header_block(data.decode("utf-8", errors="replace"))
    conn = Connection(ip=args.ip or "", helo=args.helo)
    result = classify(headers, conn, at, catalog=catalog, policy=policy, products=products)
    out = result.to_json_dict()
    out["at"] = at.isoformat()
    out["catalog"] = catalog.version
    out["products_catalog"] = products.version
    _dump(out, args.pretty)
    return 0


def cmd_catalog_show(args: argparse.Namespace) -> int:
    try:
        catalog, _ = _load(args.catalog, None)
        products = _load_products(args.products_dir)
    except InputError as exc:
        _err(str(exc))
        return 2
    if args.product:
        return _show_product(products, args.product)
    n = catalog.newest
    print(f"catalog:  {catalog.source}")
    print(f"newest:   {n.short} ({n.long}) {n.release_name}, released {n.release_date.isoformat()}")
    print(f"rows:     {catalog.row_count}")
    print(f"sha256:   {catalog.sha256}")
    print(f"version:  {catalog.version}")
    print(f"products: {products.source} ({products.version})")
    for product in products.products:
        releases = products.product_releases(product)
        newest = releases[-1]
        print(f"  {product:<12} {len(releases):>4} releases, newest {newest.version} ({_day(newest)})")
    return 0


def _day(row: ProductRelease) -> str:
    return row.released.isoformat() if row.released else "date not published"


def _show_product(products: ProductCatalog, product: str) -> int:
    """Every release of one product: version, release date, end of support, security fixes."""
    releases = products.product_releases(product)
    if not releases:
        known = ", ".join(products.products) or "none"
        _err(f"--product {product!r}: no releases in {products.source} (products: {known})")
        return 2
    print(f"{PRODUCT_NAMES.get(product, product)} ({product}): {len(releases)} releases from {products.source}")
    for r in releases:
        eos = f" end of support {r.end_of_support.isoformat()}" if r.end_of_support else ""
        fixes = f" fixes {', '.join(r.fixes)}" if r.fixes else ""
        print(f"  {r.version:<16} released {_day(r)}{eos}; security release: {r.security}{fixes}")
    return 0


def cmd_catalog_check(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.is_dir():
        _err(f"{args.file}: is a directory")
        return 2
    try:
        errors = check_products_file(path) if _is_product_file(path) else check_catalog(path)
    except OSError as exc:
        _err(f"{args.file}: {exc.strerror or exc}")
        return 2
    except UnicodeDecodeError as exc:
        _err(f"{args.file}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return 2
    for e in errors:
        print(f"{args.file}: {e}")
    if errors:
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    return 0


def _is_product_file(path: Path) -> bool:
    """A product catalog (its first line starts with ``product,version,``), not an Exchange one."""
    with path.open("rb") as fh:
        first = fh.readline(4096)
    return first.startswith(",".join(PRODUCT_COLUMNS[:2]).encode() + b",")


def main(argv: Sequence[str] | None = None) -> int:
    """Run only this module's subcommands (for debugging; the real entry point is processors.cli)."""
    parser = argparse.ArgumentParser(prog="patchgate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))
