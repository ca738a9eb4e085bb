"""``patchgate classify`` and ``patchgate catalog show|check``: in-process and as a subprocess."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from processors.classify.cli import parse_header_block
from processors.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "processors" / "data"
HEADERS = (
    "Return-Path: <alice@contoso.com>\n"
    "Received: from EX01.contoso.local (10.0.0.5) by EX02.contoso.local (10.0.0.6) with Microsoft SMTP\n"
    " Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.2562.49; Tue, 2 Jul\n"
    " 2024 10:11:12 +0000\n"
    "Received: from EX00.contoso.local ([fe80::1%12]) by EX01.contoso.local ([fe80::1%12]) with mapi id\n"
    " 15.02.2562.049; Tue, 2 Jul 2024 10:11:00 +0000\n"
    "Subject: hello\n"
    "\n"
    "Received: from body by body with Microsoft SMTP Server id 8.0.685.25; not a header\n"
)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_parse_header_block_folds_and_stops_at_blank_line() -> None:
    headers = parse_header_block(HEADERS)
    assert [n for n, _ in headers] == ["Return-Path", "Received", "Received", "Subject"]
    assert "\r\n Server" in headers[1][1]
    assert parse_header_block("From alice@x Tue Jul  2 10:11:12 2024\nSubject: x\n") == [("Subject", "x")]


def test_classify_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.eml"
    f.write_text(HEADERS)
    rc, out, _ = _run(
        ["classify", "--at", "2026-11-28", "--helo", "mail.contoso.com", "--ip", "203.0.113.5", str(f)], capsys
    )
    assert rc == 0
    assert out.count("\n") == 1
    d = orjson.loads(out)
    assert d["server"] == "ex02.contoso.local"
    assert d["build"] == "15.2.2562.49" and d["build_long"] == "15.02.2562.049"
    assert d["product"] == "exchange" and d["version"] == "15.2.2562.49"
    assert d["product_name"] == "Exchange Server SE"
    assert (d["status"], d["rule"]) == ("behind", "grace_period")
    assert d["recommended_builds"] == [
        {"short": "15.2.2562.53", "long": "15.02.2562.053", "name": "Exchange Server SE RTM Sep26SUv2"}
    ]
    assert d["hop"].startswith("from EX01.contoso.local")
    assert d["vulnerable"] is True and d["reason"]
    assert d["context_hops"] == [{"by": "ex01.contoso.local", "build": "15.2.2562.49", "kind": "exchange"}]


def test_classify_stdin_and_bytes_junk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = b"Received: from x by y.contoso.com with Microsoft SMTP Server id 15.1.2507.39; \xff\xfe d\n\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    rc, out, _ = _run(["classify", "--at", "2024-06-01", "-"], capsys)
    assert rc == 0
    d = orjson.loads(out)
    assert (d["server"], d["status"], d["rule"]) == ("y.contoso.com", "current", "latest_su")


def test_classify_status_does_not_change_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.txt"
    f.write_text("Subject: no received at all\n")
    rc, out, _ = _run(["classify", "--ip", "198.51.100.7", str(f)], capsys)
    d = orjson.loads(out)
    assert rc == 0 and (d["status"], d["rule"], d["server"]) == ("no_build", "no_received", "198.51.100.7")


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "blank"])
def test_classify_unreadable_input(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "x"
    if kind == "directory":
        target.mkdir()
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "blank":
        target.write_bytes(b"\n \n")
    rc, out, err = _run(["classify", str(target)], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("patchgate: ") and str(target) in err


def test_classify_bad_at_catalog_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.txt"
    f.write_text(HEADERS)
    rc, _, err = _run(["classify", "--at", "yesterday", str(f)], capsys)
    assert rc == 2 and "--at" in err
    bad_policy = tmp_path / "p.toml"
    bad_policy.write_text("[classification]\ngrace_days = -3\n")
    rc, _, err = _run(["classify", "--policy", str(bad_policy), str(f)], capsys)
    assert rc == 2 and "classification.grace_days: must be an integer 0..365, got -3" in err
    rc, _, err = _run(["classify", "--catalog", str(tmp_path / "nope.csv"), str(f)], capsys)
    assert rc == 2 and "--catalog" in err


def test_classify_with_policy_and_catalog_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.txt"
    f.write_text(HEADERS)
    pol = tmp_path / "p.toml"
    pol.write_text("[classification]\ngrace_days = 90\n[[stages]]\nx = 1\n")
    shutil.copy(DATA / "exchange-builds.csv", tmp_path / "b.csv")
    rc, out, _ = _run(
        ["classify", "--at", "2026-11-28", "--policy", str(pol), "--catalog", str(tmp_path / "b.csv"), str(f)],
        capsys,
    )
    d = orjson.loads(out)
    assert rc == 0 and (d["status"], d["rule"]) == ("current", "within_grace")


def test_catalog_show(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["catalog", "show"], capsys)
    assert rc == 0
    assert "15.2.2562.53" in out and "Exchange Server SE RTM Sep26SUv2" in out and "2026-10-02" in out
    assert "rows:     419" in out and "sha256:" in out


def test_catalog_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["catalog", "check", str(DATA / "exchange-builds.csv")], capsys)
    assert rc == 0 and out.strip().endswith(": ok")
    bad = tmp_path / "bad.csv"
    lines = (DATA / "exchange-builds.csv").read_text().splitlines()
    lines.insert(3, lines[1])
    lines[12] = lines[12].replace(",RU,", ",ZZ,")
    bad.write_text("\n".join(lines) + "\n")
    rc, out, _ = _run(["catalog", "check", str(bad)], capsys)
    assert rc == 1
    assert f"{bad}: line 4: duplicate build 8.0.685.25 (first at line 2)" in out
    assert f"{bad}: line 13: bad kind 'ZZ'" in out
    rc, _, err = _run(["catalog", "check", str(tmp_path / "missing.csv")], capsys)
    assert rc == 2 and "missing.csv" in err
    rc, _, err = _run(["catalog", "check", str(tmp_path)], capsys)
    assert rc == 2
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00junk")
    rc, _, err = _run(["catalog", "check", str(binary)], capsys)
    assert rc == 2 and "UTF-8" in err


PATCHGATE = Path(sys.executable).parent / "patchgate"


def test_subprocess_console_script(tmp_path: Path) -> None:
    assert PATCHGATE.exists(), "the patchgate console script is not installed: `make install` (pip install -e .)"
    f = tmp_path / "h.txt"
    f.write_text(HEADERS)
    p = subprocess.run([str(PATCHGATE), "classify", "--at", "2026-11-28", str(f)], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert orjson.loads(p.stdout)["status"] == "behind"
    p = subprocess.run([str(PATCHGATE), "classify", "-"], input=HEADERS.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0 and orjson.loads(p.stdout)["build"] == "15.2.2562.49"
    p = subprocess.run([str(PATCHGATE), "classify", "-"], input=b"", capture_output=True, timeout=60)
    assert p.returncode == 2 and b"empty input" in p.stderr
    p = subprocess.run([str(PATCHGATE), "catalog", "show"], capture_output=True, timeout=60)
    assert p.returncode == 0 and b"15.2.2562.53" in p.stdout
