"""Product and version on every surface: worker evidence, verdicts and replies, notifications, report,
contracts (additive v1 fields), and the product catalogs' hot reload."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import orjson
import pytest

from processors.classify import Connection, classify
from processors.contracts import ContractError, contracts
from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import load_enforcement_policy
from processors.enforcement.verdicts import ServerState, evaluate
from processors.report.model import build_row
from processors.report.render import CSV_COLUMNS, csv_record
from processors.worker.policies import PolicySource
from processors.worker.processing import evidence_item

AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
CONN = Connection("192.0.2.1", "h.example")
EXIM_87 = "from a ([198.51.100.1]) by mx.example with esmtp (Exim 4.87) id 1x; Tue, 2 Jul 2024 10:11:12 +0000"
IIS_2003 = "from a ([198.51.100.1]) by iis.example with Microsoft SMTPSVC(6.0.3790.4675); Tue, 2 Jul 2024"
POLICY = load_enforcement_policy()
DETECTED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
IIS_STATE = ServerState(
    server_key="contoso/iis.example", tenant_id="contoso", server="iis.example", status="unsupported",
    rule="end_of_support", product="Microsoft SMTPSVC (IIS SMTP)", build=None, product_id="smtpsvc",
    version="6.0.3790", recommended=({"short": "10.0.20348", "long": "10.0.20348",
                                      "name": "Microsoft SMTPSVC (IIS SMTP) 10.0.20348"},),
    detected_at=DETECTED, connector_type="OnPremises", client_ips=("203.0.113.10",),
)


def test_evidence_of_report_only_products_detects_nothing() -> None:
    exim = classify([("Received", EXIM_87)], CONN, AT)
    iis = classify([("Received", IIS_2003)], CONN, AT)
    assert exim.vulnerable and iis.vulnerable
    exim_item, iis_item = evidence_item(exim, AT.timestamp()), evidence_item(iis, AT.timestamp())
    assert exim_item["vulnerable"] == 0 and iis_item["vulnerable"] == 1
    fields = iis_item["fields"]
    assert (fields["product_id"], fields["version"], fields["product"]) == (
        "smtpsvc", "6.0.3790", "Microsoft SMTPSVC (IIS SMTP)")


def test_verdict_and_notifications_carry_product_and_replies_name_it() -> None:
    committed = replace(IIS_STATE, stage=1, issued_at=DETECTED)
    result = evaluate(committed, POLICY, PauseState(), datetime(2026, 5, 15, tzinfo=UTC))
    assert result.verdict_prefix is not None and result.verdict_suffix is not None
    body = orjson.loads(result.verdict_prefix + b"7" + result.verdict_suffix)
    contracts.verdict(body)
    assert (body["product_id"], body["version"]) == ("smtpsvc", "6.0.3790")
    throttle = body["replies"]["throttle"]
    assert throttle.startswith("450 4.7.230 Connecting Microsoft SMTPSVC (IIS SMTP) 6.0.3790 server is out-of-date")
    assert "install Microsoft SMTPSVC (IIS SMTP) 10.0.20348;" in throttle
    first = evaluate(IIS_STATE, POLICY, PauseState(), DETECTED)
    note = first.notifications[0]
    contracts.notification(note)
    assert (note["product_id"], note["version"]) == ("smtpsvc", "6.0.3790") and "6.0.3790" in note["text"]


def test_exchange_replies_are_unchanged() -> None:
    exchange = replace(IIS_STATE, product="Exchange Server 2019", build="15.2.1544.4", product_id="exchange",
                       version="15.2.1544.4", stage=1, issued_at=DETECTED)
    result = evaluate(exchange, POLICY, PauseState(), datetime(2026, 5, 15, tzinfo=UTC))
    assert result.verdict_suffix is not None
    body = orjson.loads(result.verdict_prefix + b"1" + result.verdict_suffix)  # type: ignore[operator]
    assert body["replies"]["throttle"].startswith("450 4.7.230 Connecting Exchange server version is out-of-date;")


def test_v1_contracts_accept_old_and_new_records() -> None:
    result = evaluate(replace(IIS_STATE, product_id=None, version=None), POLICY, PauseState(), DETECTED)
    old = orjson.loads(result.verdict_prefix + b"1" + result.verdict_suffix)  # type: ignore[operator]
    contracts.verdict(old)  # written before products: null fields
    del old["product_id"], old["version"]
    contracts.verdict(old)  # an old producer's record without them
    with pytest.raises(ContractError):
        contracts.verdict({**old, "product_id": "Not An Id"})


def test_report_row_csv_and_json_carry_product_and_version() -> None:
    fields = {"tenant_id": "contoso", "server": "mx.example", "status": "behind", "rule": "grace_period",
              "product": "Exim", "product_id": "exim", "version": "4.87", "build": "",
              "reason": "Exim 4.87 is behind. Report only: Linux distributions patch Exim.",
              "first_seen": str(AT.timestamp()), "last_seen": str(AT.timestamp())}
    row = build_row("contoso/mx.example", fields, ["203.0.113.10"], [], [], POLICY, AT)
    assert (row.product, row.version, row.FirstDetectedDate) == ("exim", "4.87", None)  # report only
    record = csv_record(row)
    assert CSV_COLUMNS[CSV_COLUMNS.index("product"):][:2] == ("product", "version")
    assert (record["product"], record["version"]) == ("exim", "4.87")
    assert row.to_json()["product"] == "exim" and "Report only" in (row.to_json()["reason"] or "")


def _copy_products(folder: Path) -> None:
    packaged = resources.files("processors").joinpath("data", "products")
    for f in packaged.iterdir():
        if f.name.endswith(".csv"):
            (folder / f.name).write_bytes(f.read_bytes())


def test_products_dir_is_hot_reloaded_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    _copy_products(tmp_path)
    source = PolicySource(check_interval=0, products_dir=tmp_path)
    before = source.current
    exim = tmp_path / "exim.csv"
    exim.write_text(exim.read_text("utf-8") + "exim,9.9.9,2026-01-01,,yes,,https://example.org/x,test\n", "utf-8")
    os.utime(exim, (1, 1))  # a different mtime even within the file system's timestamp granularity
    assert source.maybe_reload()
    assert source.current.version != before.version
    assert source.current.products.lookup("exim", "9.9.9") is not None
    good = source.current
    exim.write_text(exim.read_text("utf-8") + "exim,10.0,someday,,yes,,https://example.org/x,\n", "utf-8")
    assert not source.maybe_reload()
    assert source.current is good
    shutil.rmtree(tmp_path)
    assert not source.maybe_reload() and source.current is good  # an unreadable folder keeps the version


def test_products_dir_setting_must_be_a_folder(tmp_path: Path) -> None:
    from processors.settings import Settings, SettingsError

    assert Settings.from_env({"PATCHGATE_PRODUCTS_DIR": str(tmp_path)}).products_dir == tmp_path
    with pytest.raises(SettingsError, match="PATCHGATE_PRODUCTS_DIR: is not a folder"):
        Settings.from_env({"PATCHGATE_PRODUCTS_DIR": str(tmp_path / "missing")})
