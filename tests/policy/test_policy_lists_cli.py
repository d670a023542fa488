"""``phone-agent dnc`` and ``phone-agent consent``: operators import do-not-call lists and record
consent, and the outbound rules then see them (the real CLI parser, the real SQLite stores)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from phoneagent.cli import main
from phoneagent.policy.outbound import DialRequest, OutboundConfig, evaluate_dial
from phoneagent.policy.stores import PolicyStores

NY = "+12125550123"
PURPOSE = "appointment-reminder"
NOON_NY = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)  # 12:00 in New York: inside the calling window


def dial(db: Path, number: str = NY, at: datetime = NOON_NY) -> tuple[bool, str]:
    with PolicyStores(db) as stores:
        req = DialRequest(number=number, caller_id="+14155550100", purpose=PURPOSE, time_zone=None)
        d = evaluate_dial(req, at, stores, OutboundConfig())
    return d.allowed, d.rule


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_consent_add_lets_a_campaign_number_be_dialled_and_revoke_stops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "policy.sqlite3"
    PolicyStores(db).close()
    assert dial(db) == (False, "consent")
    code, _, _ = cli(
        capsys, "consent", "add", "212-555-0123", "--purpose", PURPOSE, "--source", "web form",
        "--date", "2026-05-01", "--expires", "2027-05-01", "--db", str(db),
    )  # fmt: skip
    assert code == 0 and dial(db) == (True, "all_rules")
    code, out, _ = cli(capsys, "consent", "list", NY, "--db", str(db))
    assert code == 0 and out.split("\t")[:3] == [PURPOSE, "valid", "2026-05-01"]
    code, out, _ = cli(capsys, "consent", "revoke", NY, "--purpose", PURPOSE, "--db", str(db))
    assert code == 0 and out.startswith("1 consent record")
    tomorrow_noon = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(16, 0), UTC)
    assert dial(db, at=tomorrow_noon) == (False, "consent")  # revoked as of now


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--date", "yesterday"], "is not a date"),
        (["--date", "2999-01-01"], "in the future"),
        (["--date", "2026-05-01", "--expires", "2026-04-01"], "expire after"),
    ],
)
def test_consent_add_rejects_bad_input_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    db = tmp_path / "policy.sqlite3"
    code, _, err = cli(
        capsys, "consent", "add", NY, "--purpose", PURPOSE, "--source", "web", *extra, "--db", str(db)
    )
    assert code == 2 and message in err and "Traceback" not in err
    assert dial(db) == (False, "consent")


def test_consent_import_is_all_or_nothing_with_row_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "policy.sqlite3"
    bad = tmp_path / "consent.csv"
    bad.write_text(
        "number,purpose,source,date,expires\n"
        f"{NY},{PURPOSE},web form,2026-05-01,\n"
        "not-a-number,appointment-reminder,web form,2026-05-01,\n"
        "\n"
        f"+13125550100,{PURPOSE},paper,someday,\n",
        encoding="utf-8",
    )
    code, _, err = cli(capsys, "consent", "import", str(bad), "--db", str(db))
    assert code == 1 and "row 3:" in err and "row 5:" in err and "nothing imported" in err
    assert dial(db) == (False, "consent")  # the good row was not stored either

    good = tmp_path / "fixed.csv"
    good.write_text(f"number,date\n{NY},2026-05-01\n+13125550100,2026-05-02\n", encoding="utf-8")
    code, _, err = cli(
        capsys, "consent", "import", str(good), "--purpose", PURPOSE, "--source", "web form", "--db", str(db)
    )
    assert code == 0 and "2 consent record(s) imported" in err
    assert dial(db) == (True, "all_rules") and dial(db, "+13125550100") == (True, "all_rules")
    code, _, err = cli(capsys, "consent", "import", str(good), "--db", str(db))
    assert code == 2 and "no purpose column: give --purpose" in err


def test_dnc_import_keeps_good_rows_and_reports_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "policy.sqlite3"
    with PolicyStores(db) as stores:
        stores.consent.grant(NY, PURPOSE, "web form", datetime(2026, 1, 1, tzinfo=UTC))
    assert dial(db) == (True, "all_rules")
    listing = tmp_path / "dnc.csv"
    listing.write_text(f"phone\n{NY}\n12345\n2125550123\n", encoding="utf-8")
    code, _, err = cli(capsys, "dnc", "import", str(listing), "--list", "national-2026-06", "--db", str(db))
    assert code == 1 and "row 3:" in err and "1 imported, 1 duplicate(s), 1 bad row(s) not imported" in err
    assert dial(db) == (False, "imported_dnc")


def test_dnc_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "policy.sqlite3"
    with PolicyStores(db) as stores:
        stores.consent.grant(NY, PURPOSE, "web form", datetime(2026, 1, 1, tzinfo=UTC))
    code, out, _ = cli(capsys, "dnc", "add", "(212) 555-0123", "--source", "complaint", "--db", str(db))
    assert code == 0 and NY in out and dial(db) == (False, "internal_dnc")
    code, out, err = cli(capsys, "dnc", "list", "--db", str(db))
    assert code == 0 and out.startswith(NY) and out.rstrip().endswith("complaint") and "1 number(s)" in err
    assert cli(capsys, "dnc", "remove", NY, "--db", str(db))[0] == 0 and dial(db) == (True, "all_rules")
    code, _, err = cli(capsys, "dnc", "remove", NY, "--db", str(db))
    assert code == 1 and "not on the internal list" in err
    code, _, err = cli(capsys, "dnc", "add", "call me maybe", "--db", str(db))
    assert code == 2 and "phone-agent dnc:" in err
