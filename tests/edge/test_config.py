"""Edge configuration: parsing, precise errors, connector matching."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edge.config import ConfigError, load_config, parse_config

GOOD = """
[edge]
name = "edge-1"

[[connector]]
id = "contoso-onprem"
tenant_id = "contoso"
type = "OnPremises"
client_ips = ["192.0.2.0/24", "2001:db8:10::/48"]

[[connector]]
id = "fabrikam-partner"
tenant_id = "fabrikam"
type = "Partner"
client_ips = ["192.0.2.128/25"]       # shadowed by the first connector for these IPs
tls_cert_subjects = ["mail.fabrikam.com", "*.fabrikam.net"]
"""


def test_load_and_match(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.name == "edge-1"
    assert cfg.enforce_connector_types == frozenset({"OnPremises"})
    c = cfg.match("192.0.2.200")
    assert c is not None and c.id == "contoso-onprem"  # first match wins
    assert cfg.match("::ffff:192.0.2.5").id == "contoso-onprem"  # type: ignore[union-attr]
    assert cfg.match("IPv6:2001:db8:10::7").id == "contoso-onprem"  # type: ignore[union-attr]
    assert cfg.match("198.51.100.1") is None
    assert cfg.match("not an ip") is None
    assert cfg.match("198.51.100.1", "MAIL.Fabrikam.com").id == "fabrikam-partner"  # type: ignore[union-attr]
    assert cfg.match("198.51.100.1", "CN=relay.eu.fabrikam.net,O=Fabrikam").id == "fabrikam-partner"  # type: ignore[union-attr]
    assert cfg.match("198.51.100.1", "fabrikam.net") is None
    assert cfg.in_scope(cfg.match("192.0.2.1")) and not cfg.in_scope(cfg.match(None, "mail.fabrikam.com"))
    assert not cfg.in_scope(None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[edge]\nnmae = 'x'\n", r"\[edge\]: unknown key\(s\) nmae"),
        ("[[connector]]\ntenant_id='t'\ntype='OnPremises'\nclient_ips=['10.0.0.0/8']\n",
         r"connector\[0\]: id: missing"),
        ("[[connector]]\nid='a'\ntenant_id='t'\ntype='Onprem'\nclient_ips=['10.0.0.0/8']\n",
         r"connector\[0\] \(id 'a'\): type: unknown connector type 'Onprem'"),
        ("[[connector]]\nid='a'\ntenant_id='t'\ntype='OnPremises'\nclient_ips=['10.0.0.300/8']\n",
         r"client_ips\[0\]: '10.0.0.300/8' is not an IP network"),
        ("[[connector]]\nid='a'\ntenant_id='t'\ntype='OnPremises'\n", "needs client_ips and/or tls_cert_subjects"),
        ("[[connector]]\nid='a'\ntenant_id='t/x'\ntype='OnPremises'\nclient_ips=['10.0.0.0/8']\n", "tenant_id"),
        ("[[connector]]\nid='a'\ntenant_id='t'\ntype='OnPremises'\nclient_ips=['10.0.0.0/8']\n"
         "[[connector]]\nid='a'\ntenant_id='t'\ntype='OnPremises'\nclient_ips=['10.0.0.0/8']\n", "duplicate"),
        ("[[connector]]\nid='a'\ntenant_id='t'\ntype='OnPremises'\ntls_cert_subjects=['mail.*.com']\n",
         r"tls_cert_subjects\[0\]"),
        ("[edge]\nenforce_connector_types=['Everything']\n", "unknown type 'Everything'"),
        ("[edge]\nname='a b'\n", "name"),
        ("connector = 3\n", "use \\[\\[connector\\]\\]"),
    ],
)
def test_precise_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(__import__("tomllib").loads(text), "edge.toml")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[edge\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_scope_can_include_partner() -> None:
    cfg = parse_config({"edge": {"enforce_connector_types": ["OnPremises", "Partner"]}, "connector": [
        {"id": "p", "tenant_id": "t", "type": "Partner", "client_ips": ["10.0.0.0/8"]}]})
    assert cfg.in_scope(cfg.match("10.1.2.3"))


def test_rules_out_a_client_only_when_no_certificate_could_match_later() -> None:
    by_ip = parse_config(tomllib.loads(GOOD.split("[[connector]]\nid = \"fabrikam-partner\"")[0]))
    assert by_ip.rules_out("198.51.100.1")  # no connector covers it, none matches by certificate
    assert not by_ip.rules_out("192.0.2.7") and not by_ip.rules_out(None)
    with_certificates = parse_config(tomllib.loads(GOOD))
    assert not with_certificates.rules_out("198.51.100.1")  # it may show mail.fabrikam.com after STARTTLS
