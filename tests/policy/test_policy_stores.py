"""SQLite policy stores, number normalisation and the area code table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from phoneagent.policy.stores import PolicyStores
from phoneagent.runtime.areacodes import default_table, load_area_codes, time_zones_for
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.numbers import is_valid_e164, normalize_e164

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("(212) 555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("1-212-555-0123", "+12125550123"),
        ("+1 212 555 0123", "+12125550123"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_normalize_e164(raw: str, expected: str) -> None:
    assert normalize_e164(raw) == expected and is_valid_e164(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "555-0123",
        "0044 20 7946 0958",
        "+1 212 055 0123",
        "+1 411 555 0123",
        "2125550123x9",
        "+12345",
        "+1234567890123456",
    ],
)
def test_normalize_e164_rejects(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_e164(raw)


def test_dnc_is_durable_across_reopen(tmp_path: Path) -> None:
    db = tmp_path / "policy.sqlite"
    with PolicyStores(db) as s:
        assert s.dnc.add("(212) 555-0123", "operator", T0) == "+12125550123"
        s.dnc.add("212-555-0123", "second source ignored", T0 + timedelta(days=1))
        s.consent.grant("2125550199", "reminder", "web form", T0, T0 + timedelta(days=365))
        s.attempts.record("2125550199", T0, "c1", "busy")
    with PolicyStores(db) as s:
        entry = s.dnc.lookup("+12125550123")
        assert entry is not None and entry.source == "operator" and entry.added_at == T0
        assert s.consent.records("+12125550199", "reminder")[0].expires_at == T0 + timedelta(days=365)
        assert s.attempts.count("+12125550199") == 1
        assert s.dnc.remove("+12125550123") and s.dnc.lookup("+12125550123") is None


def test_imported_dnc_csv_reports_bad_rows_and_keeps_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "dnc.csv"
    path.write_text(
        "Name,Phone Number\nA,(212) 555-0101\nB,not-a-number\nC,\nD,+1 212 555 0101\n"
        "E,4155550102\nF,+1 111 555 0103\n",
        encoding="utf-8",
    )
    with PolicyStores(":memory:") as s:
        report = s.imported_dnc.import_csv("client-suppression", path, T0)
        assert report.imported == 2 and report.duplicates == 1
        assert [(e.row, e.reason) for e in report.errors] == [
            (3, "phone number needs a leading + and country code"),
            (4, "phone number is empty"),
            (7, "phone number is not a valid North American number"),
        ]
        assert s.imported_dnc.lists_containing("212 555 0101") == ["client-suppression"]
        assert s.imported_dnc.count("client-suppression") == 2


def test_imported_dnc_headerless_and_replace() -> None:
    with PolicyStores(":memory:") as s:
        report = s.imported_dnc.import_csv("national", "2125550101\n2125550102\n", T0)
        assert report.imported == 2 and not report.errors
        s.imported_dnc.import_csv("other", "number\n2125550101\n", T0)
        report = s.imported_dnc.import_csv("national", "number\n2125550103\n", T0, replace=True)
        assert s.imported_dnc.count("national") == 1
        assert s.imported_dnc.lists_containing("+12125550101") == ["other"]
        assert s.imported_dnc.lists_containing("+12125550103") == ["national"]


def test_imported_dnc_bad_files() -> None:
    with PolicyStores(":memory:") as s:
        with pytest.raises(InvalidArgument):
            s.imported_dnc.import_csv("x", Path("/nonexistent/dnc.csv"), T0)
        with pytest.raises(InvalidArgument):
            s.imported_dnc.import_csv(" ", "2125550101\n", T0)
        assert s.imported_dnc.import_csv("empty", "\n", T0).imported == 0


def test_store_inputs_validated() -> None:
    with PolicyStores(":memory:") as s:
        with pytest.raises(InvalidArgument, match="timezone-aware"):
            s.dnc.add("2125550101", "x", datetime(2026, 1, 1))
        with pytest.raises(InvalidArgument):
            s.dnc.add("2125550101", "  ", T0)
        with pytest.raises(InvalidArgument, match="source"):
            s.consent.grant("2125550101", "reminder", "", T0)
        with pytest.raises(InvalidArgument, match="expire"):
            s.consent.grant("2125550101", "reminder", "form", T0, T0 - timedelta(days=1))
        assert s.consent.revoke("2125550101", None, T0) == 0


def test_consent_status_and_attempt_windows() -> None:
    with PolicyStores(":memory:") as s:
        s.consent.grant("2125550101", "reminder", "form", T0, T0 + timedelta(days=30))
        rec = s.consent.records("2125550101", "reminder")[0]
        assert rec.status_at(T0 - timedelta(seconds=1)) == "not_yet_granted"
        assert rec.status_at(T0) == "valid"
        assert rec.status_at(T0 + timedelta(days=30)) == "expired"
        for minutes in (0, 10, 20):
            s.attempts.record("2125550101", T0 + timedelta(minutes=minutes))
        assert s.attempts.count("2125550101", since=T0 + timedelta(minutes=10)) == 2
        assert s.attempts.count("2125550101", until=T0 + timedelta(minutes=10)) == 1


def test_area_code_table_is_complete_and_valid() -> None:
    table = default_table()
    assert len(table) > 400  # every zone was validated against tzdata while loading
    assert table.lookup("212").time_zones == ("America/New_York",)
    assert table.lookup("602").time_zones == ("America/Phoenix",)
    assert set(table.lookup("850").time_zones) == {"America/New_York", "America/Chicago"}
    assert table.lookup("416").region == "CA-ON" and table.lookup("808").region == "US-HI"
    assert table.lookup("800") is None and table.lookup("900") is None
    assert time_zones_for("+14165550123") == ("America/Toronto",)
    assert time_zones_for("+442079460958") == ()
    assert time_zones_for("+442079460958", "Europe/London") == ("Europe/London",)


def test_area_code_table_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "codes.csv"
    bad.write_text("area_code,region,time_zones\n212,US-NY,America/Nowhere\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="line 2"):
        load_area_codes(bad)
    bad.write_text(
        "area_code,region,time_zones\n212,US-NY,America/New_York\n212,US-NY,America/New_York\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidArgument, match="duplicate"):
        load_area_codes(bad)
