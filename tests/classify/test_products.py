"""Product catalogs, per-product policy, stamp recognisers and the product verdict rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from processors.classify import Connection, classify, load_policy
from processors.classify.cli import main
from processors.classify.policy import PolicyError, parse_policy_text
from processors.classify.product_decide import ProductEvaluator
from processors.classify.product_policy import DEFAULT_PRODUCT_POLICIES
from processors.classify.products import (
    PRODUCT_COLUMNS,
    PRODUCT_NAMES,
    ProductCatalogError,
    build_products,
    check_products_file,
    check_products_text,
    load_products,
)
from processors.classify.stamps import recognise

HEADER = ",".join(PRODUCT_COLUMNS)
URL = "https://example.org/changelog"
# A small Exim history: 4.90 (no date published), 4.91 security release, 4.92, a 5.x line.
EXIM = f"""{HEADER}
exim,4.90,,,no,,{URL},date not published
exim,4.91,2018-04,,yes,CVE-2018-6789,{URL},
exim,4.92,2019-02-10,,yes,CVE-2019-10149,{URL},
exim,4.92.1,2019-07-25,,no,,{URL},
exim,5.0,2026-01-01,2026-06-30,no,,{URL},a line that ended
"""
AT = datetime(2026, 11, 28, 12, tzinfo=UTC)


def _catalog(text: str = EXIM) -> object:
    return build_products([("exim.csv", text.encode())])


def _evaluator(policy_text: str = "") -> ProductEvaluator:
    catalog = build_products([("exim.csv", EXIM.encode())])
    return ProductEvaluator(catalog, parse_policy_text(policy_text))


# ------------------------------------------------------------------------------------------ catalog


def test_packaged_product_files_are_valid_and_named_by_product(tmp_path: Path) -> None:
    folder = Path(__file__).resolve().parents[2] / "processors" / "data" / "products"
    files = sorted(folder.glob("*.csv"))
    assert files, "the packaged product catalogs are missing"
    for f in files:
        assert f.stem in PRODUCT_NAMES
        assert check_products_file(f) == [], f
    catalog = load_products()
    assert set(catalog.products) == {f.stem for f in files}


def test_errors_are_reported_by_line() -> None:
    text = (
        f"{HEADER}\nexim,4.x,2020-13-01,,maybe,CVE-1,ftp://x,\nexim,4.92,,,yes,,{URL},\n"
        f"exim,4.92,,,yes,,{URL},\nsendmail,8.15.2,,,no,,{URL},\nexim,4.93,,,no\n"
    )
    errors, rows = check_products_text(text, expect_product="exim")
    assert [str(e) for e in errors] == [
        "line 2: bad version '4.x' (like 4.96.1, 9.0.1FP10 or 9.2.4 patch 1)",
        "line 2: bad released '2020-13-01' (expected YYYY-MM-DD, YYYY-MM, YYYY or empty)",
        "line 2: bad security_release 'maybe' (expected yes, no or unknown)",
        "line 2: bad fixes 'CVE-1' (CVE ids separated by ';')",
        "line 2: bad source 'ftp://x' (a public URL)",
        "line 4: duplicate version 4.92 (first at line 3)",
        "line 5: product 'sendmail' in the file of 'exim'",
        "line 6: expected 8 fields, got 5",
    ]
    assert [r.version for r in rows] == ["4.92"]


def test_header_must_be_exact_and_file_not_empty() -> None:
    assert [str(e) for e in check_products_text("")[0]] == ["line 1: empty file: expected a header row"]
    assert "header must be exactly" in str(check_products_text("product,version\n")[0][0])
    assert [str(e) for e in check_products_text(HEADER + "\n")[0]] == ["line 1: no release rows"]


def test_load_refuses_a_bad_folder(tmp_path: Path) -> None:
    (tmp_path / "exim.csv").write_text(EXIM + "exim,4.93,yesterday,,no,,https://x,\n", "utf-8")
    with pytest.raises(ProductCatalogError, match=r"exim.csv: invalid product catalog: line 7: bad released"):
        load_products(tmp_path)
    (tmp_path / "exim.csv").write_bytes(b"\xff\xfe")
    with pytest.raises(ProductCatalogError, match="not UTF-8"):
        load_products(tmp_path)


def test_partial_dates_and_public_by() -> None:
    catalog = build_products([("exim.csv", EXIM.encode())])
    rows = {r.version: r for r in catalog.product_releases("exim")}
    assert rows["4.91"].released == date(2018, 4, 30)  # YYYY-MM: the last day of the month
    assert rows["4.90"].released is None
    assert catalog.public_by(rows["4.90"]) == date(2018, 4, 30)  # shipped before the next dated release
    assert [r.version for r in catalog.product_releases("exim")] == ["4.90", "4.91", "4.92", "4.92.1", "5.0"]


# ------------------------------------------------------------------------------------------- policy


def test_packaged_policy_products_equal_code_defaults() -> None:
    assert dict(load_policy().products) == dict(DEFAULT_PRODUCT_POLICIES)
    assert not DEFAULT_PRODUCT_POLICIES["exim"].enforce and not DEFAULT_PRODUCT_POLICIES["sendmail"].enforce
    assert all(DEFAULT_PRODUCT_POLICIES[p].enforce for p in ("domino", "smtpsvc", "mdaemon", "kerio"))


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ("[products.postfix]\nenforce = true", "products.postfix: unknown product"),
        ("[products.exim]\nenforce = 1", "products.exim.enforce: must be true or false, got 1"),
        ("[products.exim]\ngrace_days = -3", "products.exim.grace_days: must be an integer 0..365, got -3"),
        ("[products.exim]\nline_parts = 9", "products.exim.line_parts: must be an integer 1..4, got 9"),
        ("[products.exim]\nenforced = true", "products.exim.enforced: unknown key"),
        ("products = 3", "products: must be a table"),
    ],
)
def test_product_policy_errors_name_the_key(toml: str, error: str) -> None:
    with pytest.raises(PolicyError, match=error.replace(".", r"\.")):
        parse_policy_text(toml)


def test_one_product_table_keeps_the_others_defaults() -> None:
    policy = parse_policy_text("[products.exim]\nenforce = true\ngrace_days = 7")
    assert policy.products["exim"].enforce and policy.products["exim"].grace_days == 7
    assert policy.products["sendmail"] == DEFAULT_PRODUCT_POLICIES["sendmail"]


# ------------------------------------------------------------------------------------------- rules


def test_rules_unknown_end_of_support_behind_within_grace_latest() -> None:
    ev = _evaluator()
    assert ev.evaluate("exim", "4.89", date(2026, 1, 1)).status == "unknown_build"
    ended = ev.evaluate("exim", "5.0", date(2026, 7, 1))
    assert (ended.status, ended.rule) == ("unsupported", "end_of_support")
    assert ended.recommended == ()  # the only releases in support are older: never a downgrade
    behind = ev.evaluate("exim", "4.91", date(2019, 4, 1))
    assert (behind.status, behind.rule) == ("behind", "grace_period")
    assert "CVE-2019-10149" in behind.reason and [r.short for r in behind.recommended] == ["4.92"]
    young = ev.evaluate("exim", "4.91", date(2019, 2, 20))
    assert (young.status, young.rule) == ("current", "within_grace")
    assert ev.evaluate("exim", "4.92.1", date(2026, 1, 1)).rule == "latest_release"
    # an undated release is behind a security release published after it
    assert ev.evaluate("exim", "4.90", date(2018, 7, 1)).status == "behind"


def test_line_parts_keep_lines_apart() -> None:
    # with line_parts = 2, 4.9x releases are one line and 5.0 is another: 5.0 never makes 4.x behind
    ev = _evaluator("[products.exim]\nline_parts = 2")
    assert ev.evaluate("exim", "4.92.1", date(2026, 3, 1)).status == "current"


def test_report_only_products_say_why_and_enforced_ones_enforce() -> None:
    report_only = _evaluator().evaluate("exim", "4.91", date(2019, 4, 1))
    assert not report_only.enforced and "Linux distributions" in report_only.reason
    enforced = _evaluator("[products.exim]\nenforce = true").evaluate("exim", "4.91", date(2019, 4, 1))
    assert enforced.enforced and "Report only" not in enforced.reason


# ------------------------------------------------------------------------------------------ stamps


@pytest.mark.parametrize(
    ("value", "kind", "product", "version"),
    [
        ("from a by b with esmtp (Exim 4.92 #3) id 1; d", "versioned", "exim", "4.92"),
        ("from a by b with esmtp (Exim 4.89_1) id 1; d", "versioned", "exim", "4.89"),
        ("from a\r\n\tby b with esmtps (Exim\r\n 4.89) id 1; d", "versioned", "exim", "4.89"),
        ("from a by b (8.14.4/8.14.4/Debian-4) with ESMTP id 1; d", "versioned", "sendmail", "8.14.4"),
        ("from a by b with ESMTP (Sendmail 8.9.3) id 1; d", "versioned", "sendmail", "8.9.3"),
        ("from a by b (HCL Domino Release 12.0.2FP1) with ESMTP id 1; d", "versioned", "domino", "12.0.2FP1"),
        ("from a by b (IBM Domino Release 9.0.1FP10 HF383) with ESMTP id 1; d", "versioned", "domino", "9.0.1FP10"),
        ("from a by b with Microsoft SMTPSVC(7.5.7601.17514); d", "versioned", "smtpsvc", "7.5.7601"),
        ("from a by b (MDaemon PRO v10.1.2) with ESMTP id md5; d", "versioned", "mdaemon", "10.1.2"),
        ("from a by b (Kerio Connect 9.2.4 patch 1) with ESMTPS; d", "versioned", "kerio", "9.2.4 patch 1"),
        ("from a by b (CommuniGate Pro SMTP 6.1.7) with ESMTPS id 1; d", "versioned", "communigate", "6.1.7"),
        ("from a by b (Merak 9.4.2) with ESMTP id x; d", "versioned", "icewarp", "9.4.2"),
        ("from a by mx0a.pphosted.com (8.16.0.42/8.16.0.42) with SMTP id 1; d", "look_alike", "sendmail", None),
        ("from a by mx.example.com (8.17.1.19/8.17.1.19) with ESMTP id 1; d", "look_alike", "sendmail", None),
        ("from user by host with local (Exim 4.92) id 1; d", "local_submission", "exim", None),
        ("from [127.0.0.1] (helo=webmail) by host with esmtpa (Exim 4.92) id 1; d", "local_submission", "exim", None),
        ("(from root@localhost) by host (8.14.4/8.14.4/Submit) id 1; d", "local_submission", "sendmail", None),
        ("from a by b (CommuniGate Pro HTTP 6.1.7) with HTTP id 1; d", "local_submission", "communigate", None),
        ("from a by b (Exim) id 1; d", "version_unattributed", None, None),
        ("from a by b (Postfix) with esmtpa (Exim 4.86) id 1; d", "ambiguous_stamp", None, None),
        ("from a by b (Exim 4.92) (MDaemon PRO v10.1.2) id 1; d", "ambiguous_stamp", None, None),
        ("from evil (HELO (Exim 4.87)) by mx (Postfix) with ESMTP id 1; d", "none", None, None),
        ("from a by exim.example.org (Postfix) with ESMTP id 1; d", "none", None, None),
        ("from a by b with Microsoft SMTPSVC; d", "version_unattributed", None, None),
    ],
)
def test_stamp_recognisers(value: str, kind: str, product: str | None, version: str | None) -> None:
    stamp = recognise(value)
    assert (stamp.kind, stamp.product, stamp.version) == (kind, product, version), stamp.detail


def test_look_alikes_and_submissions_are_never_enforced() -> None:
    for value in (
        "from a by mx0a.pphosted.com (8.16.0.42/8.16.0.42) with SMTP id 1; d",
        "from user by host with local (Exim 4.87) id 1; d",
        "from a by b (Exim 4.x) id 1; d",
    ):
        r = classify([("Received", value)], Connection("192.0.2.1", "h.example"), AT)
        assert (r.product, r.version, r.status) == (None, None, "no_build") and not r.enforceable


def test_product_classification_names_the_by_host_and_caches_by_stamp() -> None:
    value = "from a ([198.51.100.1]) by Old-Exim.Example. with esmtp (Exim 4.87) id 1x; Tue, 2 Jul 2024 10:11:12 +0000"
    r = classify([("Received", value)], Connection("192.0.2.1", "h.example"), AT)
    assert (r.server, r.server_source, r.product, r.version, r.product_name) == (
        "old-exim.example", "by", "exim", "4.87", "Exim")
    assert r.status in {"behind", "unsupported"} and r.vulnerable and not r.enforceable
    assert r.recommended_builds and r.to_json_dict()["enforced"] is False
    assert recognise(value.replace("10:11:12", "23:59:59")) is recognise(value)


# --------------------------------------------------------------------------------------------- CLI


def test_classify_cli_reports_product_and_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.eml"
    f.write_text("Received: from a by b.example (Lotus Domino Release 8.5.3FP6)\n with ESMTP id 1; Tue, 2 Jul 2024\n")
    assert main(["classify", "--at", "2026-11-28", str(f)]) == 0
    d = orjson.loads(capsys.readouterr().out)
    got = (d["product"], d["version"], d["product_name"], d["server"])
    assert got == ("domino", "8.5.3FP6", "HCL Domino", "b.example")
    assert d["products_catalog"].startswith("products=")


def test_catalog_check_and_show_per_product(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "exim.csv", tmp_path / "bad.csv"
    good.write_text(EXIM, "utf-8")
    bad.write_text(f"{HEADER}\nexim,4.92,2019-02-31,,yes,,{URL},\n", "utf-8")
    assert main(["catalog", "check", str(good)]) == 0
    assert capsys.readouterr().out.strip().endswith("exim.csv: ok")
    assert main(["catalog", "check", str(bad)]) == 1
    assert "line 2: bad released '2019-02-31'" in capsys.readouterr().out
    assert main(["catalog", "show", "--products-dir", str(tmp_path.parent / tmp_path.name), "--product", "exim"]) == 2
    bad.unlink()
    assert main(["catalog", "show", "--products-dir", str(tmp_path), "--product", "exim"]) == 0
    out = capsys.readouterr().out
    assert "Exim (exim): 5 releases" in out and "4.92  " in out and "end of support 2026-06-30" in out
    assert main(["catalog", "show", "--products-dir", str(tmp_path)]) == 0
    assert "exim            5 releases, newest 5.0 (2026-01-01)" in capsys.readouterr().out
    assert main(["catalog", "show", "--products-dir", str(tmp_path), "--product", "kerio"]) == 2
