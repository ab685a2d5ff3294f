"""`mkt` against a real profile service: generated commands, output formats, ingestion, errors."""

from __future__ import annotations

import json
import subprocess
import sys

from services.cli.__main__ import main
from services.cli.commands import singular, split_rpc


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_rpc_names_become_resource_and_verb():
    assert split_rpc("BatchGetProfiles") == ("BatchGet", "Profiles")
    assert split_rpc("GetTraits") == ("Get", "Traits")
    assert split_rpc("ListEvents") == ("List", "Events")
    assert singular("Profiles") == "Profile" and singular("Identities") == "Identity"
    assert singular("Status") == "Status"


def test_create_get_and_list_profiles_as_table_and_json(capsys, cli_env):
    code, out, err = run(capsys, "profiles", "create", "--json",
                         '{"profile": {"external_id": "u-1", "time_zone": "Europe/Paris"}}')
    assert code == 0, err
    assert "profile.name" in out and "profiles/u-1" in out and "Europe/Paris" in out
    code, out, _ = run(capsys, "profiles", "create", "--json", '{"profile": {"external_id": "u-2"}}')
    assert code == 0
    code, out, _ = run(capsys, "--output", "json", "profiles", "get", "profiles/u-1")
    assert code == 0
    assert json.loads(out)["profile"]["time_zone"] == "Europe/Paris"
    code, out, _ = run(capsys, "profiles", "list", "--page-size", "1", "--all")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["NAME", "EXTERNAL_ID", "USER_ID"]
    assert [line.split()[1] for line in lines[1:]] == ["u-1", "u-2"]
    # Without --all only the first page comes back, with the token of the next.
    code, out, _ = run(capsys, "profiles", "list", "--page-size", "1", "-o", "json")
    page = json.loads(out)
    assert [p["external_id"] for p in page["profiles"]] == ["u-1"]
    assert page["next_page_token"]


def test_errors_are_one_line_with_the_field_and_a_nonzero_exit(capsys, cli_env):
    code, out, err = run(capsys, "profiles", "create", "--json",
                         '{"profile": {"external_id": "has space"}}')
    assert code == 1 and out == ""
    assert err.startswith("error: INVALID_ARGUMENT: profile.external_id: "), err
    assert err.count("\n") == 1
    code, _, err = run(capsys, "profiles", "get", "profiles/ghost")
    assert code == 1 and err.startswith("error: NOT_FOUND: ") and "ghost" in err
    code, _, err = run(capsys, "profiles", "list", "--rfm-group", "champs")
    assert code == 2 and "unknown RfmGroup 'champs'" in err and "at-risk" in err


def test_flags_and_env_fallbacks_for_address_and_key(capsys, cli_env, monkeypatch):
    monkeypatch.delenv("MKT_API_KEY")
    code, _, err = run(capsys, "profiles", "get", "profiles/x")
    assert code == 1 and err.startswith("error: UNAUTHENTICATED: ")
    code, _, err = run(capsys, "profiles", "get", "profiles/x", "--api-key", "operator-key")
    assert code == 1 and err.startswith("error: NOT_FOUND: ")
    monkeypatch.setenv("PROFILE_ADDR", "127.0.0.1:1")
    code, _, err = run(capsys, "--api-key", "operator-key", "--address", cli_env,
                       "profiles", "get", "profiles/x")
    assert err.startswith("error: NOT_FOUND: ")
    code, _, err = run(capsys, "--api-key", "operator-key", "--timeout", "2",
                       "profiles", "get", "profiles/x")
    assert code == 1 and err.startswith(("error: UNAVAILABLE: ", "error: DEADLINE_EXCEEDED"))


def test_events_ingest_csv_and_jsonl_then_list_and_recompute_traits(capsys, cli_env, tmp_path):
    csv_file = tmp_path / "events.csv"
    csv_file.write_text(
        "event_id,user_id,event_type,timestamp,value,sku\n"
        "e1,buyer-1,purchase,1998-01-10T10:00:00Z,20.5,A1\n"
        "e2,buyer-1,purchase,1998-02-10T10:00:00Z,10,B2\n"
        "e3,buyer-2,page_view,1998-02-11T10:00:00Z,,C3\n")
    code, out, err = run(capsys, "events", "ingest", str(csv_file), "-o", "json")
    assert code == 0, err
    assert json.loads(out) == {"accepted": 3, "duplicate": 0, "rejected": 0}
    # Sending the same file again stores nothing twice.
    code, out, _ = run(capsys, "events", "ingest", str(csv_file), "-o", "json")
    assert json.loads(out) == {"accepted": 0, "duplicate": 3, "rejected": 0}
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        json.dumps({"event_id": "e4", "user_id": "buyer-2", "event_type": "purchase",
                    "timestamp": "1998-03-01T00:00:00Z", "value": 5,
                    "properties": {"channel": "web"}}) + "\n"
        + json.dumps({"event_id": "e5", "user_id": "buyer-2", "event_type": "purchase",
                      "timestamp": "not a time"}) + "\n")
    code, out, err = run(capsys, "events", "ingest", str(jsonl), "-o", "json")
    assert code == 1
    assert json.loads(out) == {"accepted": 1, "duplicate": 0, "rejected": 1}
    assert "rejected e5: INVALID_ARGUMENT: events[1].timestamp" in err
    code, out, _ = run(capsys, "events", "list", "profiles/buyer-1", "-o", "json")
    events = json.loads(out)["events"]
    assert [e["event_id"] for e in events] == ["e2", "e1"]
    assert events[0]["properties"]["sku"] == {"string_value": "B2"}
    code, out, err = run(capsys, "traits", "recompute", "--as-of-time", "1998-03-31")
    assert code == 0, err
    assert "user_count" in out
    code, out, _ = run(capsys, "traits", "get", "profiles/buyer-1", "-o", "json")
    traits = json.loads(out)["traits"]
    assert traits["frequency"] == 2 and traits["monetary"] == 30.5


def test_cdnow_log_ingests_as_purchases(capsys, cli_env, tmp_path):
    log = tmp_path / "cdnow.txt"
    log.write_text(" customer_id  date number_of_cds  dollar_value\n"
                   " 00001 19970101  1   11.77\n 00002 19970112  1   12.00\n"
                   " 00002 19970112  5   77.00\n")
    code, out, err = run(capsys, "events", "ingest", str(log), "-o", "json")
    assert code == 0, err
    assert json.loads(out)["accepted"] == 3
    code, out, _ = run(capsys, "events", "list", "profiles/c00002", "-o", "json")
    values = sorted(e["value"] for e in json.loads(out)["events"])
    assert values == [12.0, 77.0]


def test_installed_entry_point_prints_help_and_fails_cleanly(cli_env):
    done = subprocess.run([sys.executable, "-m", "services.cli", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "profiles" in done.stdout
    done = subprocess.run([sys.executable, "-m", "services.cli", "profiles", "get",
                           "profiles/none"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: NOT_FOUND:"), done.stderr


def test_segment_commands_show_rule_text_and_locate_rule_errors(capsys, tmp_path, redis_url,
                                                                monkeypatch):
    from tests.suite import running_suite

    # Set before the suite starts: monkeypatch restores on teardown what it saw first, and the
    # suite sets (and restores) MKT_API_KEY itself, so setting it inside would leak a key.
    monkeypatch.setenv("MKT_API_KEY", "operator-key")
    monkeypatch.setenv("SEGMENT_ADDR", "")
    with running_suite(tmp_path, redis_url, services=("profile", "segment")) as suite:
        monkeypatch.setenv("SEGMENT_ADDR", suite["segment"]["address"])
        monkeypatch.setenv("MKT_API_KEY", "operator-key")
        code, out, err = run(capsys, "segments", "create", "--json",
                             '{"segment": {"display_name": "x", "rule_text": "agee > 3"}}')
        assert code == 1 and out == ""
        assert err.startswith("error: INVALID_ARGUMENT: segment.rule"), err
        assert "unknown field 'agee'" in err and "(line 1, column 1)" in err
        assert err.count("\n") == 1
        code, out, err = run(capsys, "segments", "create", "--json", json.dumps(
            {"segment": {"display_name": "Heavy",
                         "rule_text": 'frequency >= 3 and rfm("champions")'}}))
        assert code == 0, err
        code, out, _ = run(capsys, "segments", "list")
        header, row = out.strip().splitlines()
        assert "RULE_TEXT" in header and "RULE " not in header + " "
        assert 'frequency >= 3 and rfm("champions")' in row
        code, out, _ = run(capsys, "rules", "validate", "--rule-text", "agee > 3", "-o", "json")
        violations = json.loads(out)["violations"]
        assert violations[0]["line"] == 1 and violations[0]["column"] == 1
        # A snapshot export streams its members with a progress bar of the items received.
        code, out, _ = run(capsys, "segments", "list", "-o", "json")
        segment = json.loads(out)["segments"][0]["name"]
        code, out, err = run(capsys, "snapshots", "create", segment, "-o", "json")
        assert code == 0, err
        snapshot = json.loads(out)["snapshot"]["name"]
        monkeypatch.delenv("MKT_NO_PROGRESS", raising=False)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal
        code, out, err = run(capsys, "snapshots", "members", snapshot, "-o", "json")
        assert code == 0, err
        members = [m for page in json.loads(out) for m in page.get("members", [])]
        assert f"StreamSnapshotMembers: {len(members)}item " in err.splitlines()[-1], err


def test_stream_progress_counts_the_items_each_message_carries():
    from marketing.segment.v1 import segment_service_pb2 as spb
    from services.cli.__main__ import _items_in

    assert _items_in(spb.StreamSnapshotMembersResponse(members=[
        spb.Member(user_id=i) for i in range(3)])) == 3
    assert _items_in(spb.StreamSnapshotMembersResponse()) == 0
    assert _items_in(spb.CheckMembershipResponse()) == 1  # no repeated field: one item
