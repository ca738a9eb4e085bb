"""``patchgate whatif`` as an operator runs it, without services: the formats (the JSON contract
validated by the reference validator), the policy diff, and bad input (one clear line, or listed
skips: never a traceback, never a silent drop)."""

from __future__ import annotations

import gzip
import signal
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from processors.cli import main
from processors.contracts import schemas_dir
from processors.whatif import simulate
from processors.whatif.model import Prediction
from tests.whatif.helpers import packaged_policy, sample_files, tighter_policy


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["whatif", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, Path]:
    return sample_files(tmp_path)


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    document: dict[str, Any] = orjson.loads(out)
    schema = orjson.loads((schemas_dir() / "whatif.v1.json").read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(document)
    return document


def server(document: dict[str, Any], key: str) -> dict[str, Any]:
    return next(s for s in document["servers"] if f"{s['tenant_id']}/{s['server']}" == key)


def test_json_follows_its_contract_and_tells_stages_pauses_and_answers(
        capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path]) -> None:
    records, commands = sample
    document = as_json(capsys, str(records), "--commands", str(commands))
    assert document["input"]["records"] == 110 and document["input"]["commands"] == 3
    assert sum(document["messages"].values()) == 110
    ex2019 = server(document, "contoso/ex2019.contoso.com")
    assert [(s["at"][:10], s["stage"]) for s in ex2019["stages"]][:3] == [
        ("2026-10-05", 1), ("2026-11-04", 2), ("2026-11-14", 3)]
    assert [p["from"][:10] for p in ex2019["pauses"]] == ["2026-11-09", "2026-12-19"]
    assert sum(d["accepted"] + d["deferred"] + d["rejected"] for d in ex2019["days"]) == 9
    exim = server(document, "tailspin/exim.tailspin.com")
    assert exim["stages"] == [] and exim["messages"] == {"accepted": 9, "deferred": 0, "rejected": 0}
    assert exim["products"] == [{"product": "exim", "version": "4.89"}]


def test_other_stage_days_and_minutes_change_the_prediction(
        capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path], tmp_path: Path) -> None:
    records, commands = sample
    packaged = as_json(capsys, str(records), "--commands", str(commands))
    tighter = as_json(capsys, str(records), "--commands", str(commands), "--policy", str(tighter_policy(tmp_path)))
    stages = [(s["at"][:10], s["stage"], s["throttle_minutes"], s["block_minutes"])
              for s in server(tighter, "fabrikam/ex2016.fabrikam.com")["stages"]]
    assert stages == [("2026-10-05", 1, 20, 0), ("2026-10-20", 2, 30, 15), ("2026-11-19", 3, 0, 60)]
    assert tighter["messages"]["rejected"] > packaged["messages"]["rejected"]


def test_the_policy_diff_lists_changed_servers_and_moved_messages(
        capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path], tmp_path: Path) -> None:
    records, commands = sample
    new = tighter_policy(tmp_path)
    packaged = as_json(capsys, str(records), "--commands", str(commands))
    current = tmp_path / "current.toml"
    current.write_text(packaged_policy())
    code, out, err = run(capsys, str(records), "--commands", str(commands), "--policy", str(new), "--against",
                         str(current), "--format", "json")
    assert code == 0, err
    diff = orjson.loads(out)
    changed = {s["server_key"] for s in diff["servers"]}
    assert "fabrikam/ex2016.fabrikam.com" in changed and "tailspin/exim.tailspin.com" not in changed
    assert diff["messages_current"] == packaged["messages"]
    # the moves per tenant account exactly for the change of the totals
    for index, answer in enumerate(("accepted", "deferred", "rejected")):
        net = sum(count for moves in diff["moves"].values() for name, count in moves.items()
                  if name.endswith(f"->{answer}")) - sum(
            count for moves in diff["moves"].values() for name, count in moves.items()
            if name.startswith(f"{answer}->"))
        assert diff["messages_new"][answer] - diff["messages_current"][answer] == net, (index, answer)
    assert any(diff["moves"].values())
    code, out, _ = run(capsys, str(records), "--policy", str(new), "--against", str(current))
    assert code == 0 and "fabrikam/ex2016.fabrikam.com" in out and "accepted -> rejected" in out


def test_table_csv_and_html(capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path]) -> None:
    records, commands = sample
    code, table, _ = run(capsys, str(records), "--commands", str(commands))
    assert code == 0 and "ex2019.contoso.com" in table and "110 messages" in table
    code, text, _ = run(capsys, str(records), "--format", "csv")
    rows = text.splitlines()
    assert code == 0 and rows[0].startswith("tenant_id,server,day,accepted,deferred,rejected")
    assert sum(int(row.split(",")[3]) + int(row.split(",")[4]) + int(row.split(",")[5]) for row in rows[1:]) == 110
    code, page, _ = run(capsys, str(records), "--format", "html")
    assert code == 0 and "<script" not in page and page.count("<svg") == 3  # one chart per tenant
    assert "Content-Security-Policy" in page and "default-src 'none'; style-src 'sha256-" in page


def test_gzip_input_gives_the_same_prediction(capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    records, _ = sample
    packed = tmp_path / "sample.jsonl.gz"
    packed.write_bytes(gzip.compress(records.read_bytes()))
    assert as_json(capsys, str(packed)) == as_json(capsys, str(records))


def test_bad_lines_are_counted_and_listed_the_rest_simulated(
        capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    records, _ = sample
    lines = records.read_bytes().splitlines()
    late = orjson.loads(lines[0])
    late["event_id"] = "late-one"
    bad_ip = orjson.loads(lines[1])
    bad_ip["event_id"], bad_ip["client"]["ip"] = "bad-ip", "[192.0.2.10]"
    envelope = orjson.dumps({"schema": "patchgate.metadata-batch/1", "server_key": "contoso/x.contoso.com",
                             "records": [orjson.loads(lines[2]) | {"event_id": "in-envelope"}, {"schema": 1}]})
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join([*lines[:5], b"{not json", b"[1, 2]", envelope, orjson.dumps(bad_ip),
                                  *lines[5:], orjson.dumps(late)]) + b"\n")
    monkeypatch.setattr(simulate, "REORDER", 20)  # the late record falls out of the reordering window ...
    monkeypatch.setattr(simulate, "RELEASE_RUN", 4)  # ... which is at most 24 records long
    document = as_json(capsys, str(mixed))
    reasons = {s["where"].rsplit(":", 1)[1]: s["reason"] for s in document["skipped"]["first"]}
    assert document["input"]["skipped"] == 5 == len(reasons)
    assert reasons["6"].startswith("invalid JSON") and reasons["7"].startswith("unknown schema")
    assert reasons["8 record 1"] == "contract: $: missing required property 'event_id'"
    assert reasons["9"].startswith("contract: $.client.ip: does not match")
    assert reasons[str(len(lines) + 5)].startswith("out of time order")
    assert document["input"]["records"] == 111  # the sample, and the good record of the envelope


@pytest.mark.parametrize(("change", "expected"), [
    (("start_day = 30", "start_day = 0"), "enforcement.stages[1].start_day: must be greater than"),
    (("[enforcement]", "[enforcement]\nsurprise = 1"), "enforcement: unknown key 'surprise'"),
    (("throttle_minutes = 5", "throttle_minutes = 61"), "throttle_minutes: must be an integer 0..60"),
    (("[pauses]", "[[pauses"), "invalid TOML"),
])
def test_a_bad_policy_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path],
                                             tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    path = tmp_path / "policy.toml"
    text = packaged_policy()
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    for argv in (["--policy", str(path)], ["--against", str(path)]):
        code, out, err = run(capsys, str(sample[0]), *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and expected in err, err


def test_nothing_to_simulate_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                    sample: tuple[Path, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n")
    for argv in ([str(empty)], [str(sample[0]), "--enforce-from", "2030-01-01"], [str(tmp_path / "missing.jsonl")],
                 [str(sample[0]), "--enforce-from", "tomorrow"], []):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (argv, err)
    _, _, err = run(capsys, str(sample[0]), "--enforce-from", "2030-01-01")
    assert "110 records lie before --enforce-from" in err


def test_enforce_from_leaves_earlier_records_out(capsys: pytest.CaptureFixture[str],
                                                 sample: tuple[Path, Path]) -> None:
    document = as_json(capsys, str(sample[0]), "--enforce-from", "2026-11-01")
    assert document["input"]["before_enforce_from"] == 3 * 12  # the mail of days 0, 10 and 20
    ex2019 = server(document, "contoso/ex2019.contoso.com")
    assert ex2019["first_detected"] == "2026-11-07T13:00:00Z"  # its clock starts with patchgate


def test_a_shadowed_tenant_is_marked_and_counted_by_the_replies_its_edges_withhold(
        capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path], tmp_path: Path) -> None:
    """Shadow mode changes what the edge sends, not what enforcing would do: the prediction counts the
    withheld replies and marks the tenant's servers, so an operator sees what turning shadow off does."""
    records, commands = sample
    enforcing = as_json(capsys, str(records), "--commands", str(commands))
    shadowed_policy = tmp_path / "shadow.toml"
    policy_text = packaged_policy()
    assert "\n# contoso = true\n" in policy_text
    shadowed_policy.write_text(policy_text.replace("\n# contoso = true\n", "\ncontoso = true\n"))
    shadowed = as_json(capsys, str(records), "--commands", str(commands), "--policy", str(shadowed_policy))
    contoso = server(shadowed, "contoso/ex2019.contoso.com")
    assert contoso["shadow"] is True and contoso["messages"]["deferred"] + contoso["messages"]["rejected"] > 0
    assert contoso["messages"] == server(enforcing, "contoso/ex2019.contoso.com")["messages"]
    assert server(shadowed, "fabrikam/ex2016.fabrikam.com")["shadow"] is False
    assert server(enforcing, "contoso/ex2019.contoso.com")["shadow"] is False
    code, out, err = run(capsys, str(records), "--commands", str(commands), "--policy", str(shadowed_policy))
    assert code == 0, err
    assert "shadow mode (contoso): their edges accept" in out


def test_the_prediction_is_never_formatted_whole(capsys: pytest.CaptureFixture[str], sample: tuple[Path, Path],
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 request: pytest.FixtureRequest) -> None:
    """A prediction's text is as large as the prediction: no run formats it (Python 3.11's
    ``asyncio.run`` formats its main task's result when it puts the SIGINT handler back)."""
    formatted: list[int] = []

    def noted(self: Prediction) -> str:  # reprlib, which asyncio formats a task with, swallows an exception
        formatted.append(len(self.servers))
        return "Prediction(...)"

    monkeypatch.setattr(Prediction, "__repr__", noted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (asyncio.run's case)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    records, commands = sample
    code, out, err = run(capsys, str(records), "--commands", str(commands), "--format", "json")
    assert code == 0, err
    assert orjson.loads(out)["input"]["records"] == 110
    current = tmp_path / "current.toml"
    current.write_text(packaged_policy())
    code, out, err = run(capsys, str(records), "--policy", str(tighter_policy(tmp_path)), "--against", str(current))
    assert code == 0, err
    assert formatted == []
