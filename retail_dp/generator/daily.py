"""Lay a landing zone out as a retailer's daily drops, to exercise incremental refreshes.

The order system exports the lines it created or changed each day. From a generated landing
zone this writes:

- `purchase/history.csv`: every line that arrived before `start`;
- `purchase/YYYY-MM-DD.csv`: the lines that arrived that day. A line arrives on its
  `updated_at` day, except that about 2% arrive `LATE_DAYS` later (late lines), and about 0.2%
  are sent again `CORRECTION_DAYS` later with one more unit and a newer `updated_at`
  (corrections of a line already delivered);
- `customer_info` and `product` as they are (full extracts).

The choice of late and corrected lines hashes the line's id, so the same input gives the same
files. Lines whose dates do not parse stay in the history file.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb

LATE_DAYS = 3
CORRECTION_DAYS = 2
# corrections count as duplicate keys in the uniqueness SLO (at most 0.5%), so they stay below
CORRECTION_SHARE = 0.002
HISTORY = "history"


def _pick(column: str, salt: str, share: float) -> str:
    """TRUE for a stable `share` of rows, chosen by a hash of `column`."""
    return f"(hash(coalesce({column}, '') || '{salt}') % 10000) < {int(share * 10000)}"


def daily_drops(landing: Path, out: Path, start: date) -> list[Path]:
    """Write the daily layout of `landing` to `out` (which may be `landing` itself: its
    purchase.csv is then replaced by the folder); returns the daily files, oldest first."""
    out.mkdir(parents=True, exist_ok=True)
    in_place = out.resolve() == landing.resolve()
    if not in_place:
        for name in ("customer_info.csv", "product.csv"):
            shutil.copyfile(landing / name, out / name)
    folder = out / "purchase"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    # streamed from the landing file, never held whole: a 5M-customer history (10 GB of CSV)
    # fits in bounded memory. Only the days from `start` on, a small tail, are kept, to sort.
    scratch = out / ".daily_tmp"
    con = duckdb.connect(config={"memory_limit": "2GB", "temp_directory": str(scratch)})
    try:
        columns = _write_drops(con, landing / "purchase.csv", folder, start)
        written = _write_days(con, folder, start, columns)
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if in_place:
        (landing / "purchase.csv").unlink()
    return written


def _write_drops(
    con: duckdb.DuckDBPyConnection, source: Path, folder: Path, start: date
) -> list[str]:
    """The view `drops` (each line on the day it arrives, corrections added), the history
    file (its rows in the landing file's order, the corrections after them) and the table
    `recent` (the lines arriving from `start` on); returns the landing file's columns."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    quoted = "'" + str(source).replace("'", "''") + "'"  # a view cannot bind a parameter
    con.execute(
        f"CREATE VIEW lines AS SELECT * FROM read_csv({quoted}, header = true, all_varchar = true)"
    )
    columns = [r[0] for r in con.execute("DESCRIBE lines").fetchall()]
    arrived = (
        "coalesce(TRY_CAST(updated_at AS DATE), TRY_CAST(purchase_ts AS DATE), DATE '1900-01-01')"
    )
    corrected = ", ".join(
        {
            "quantity": "CAST(TRY_CAST(quantity AS BIGINT) + 1 AS VARCHAR) AS quantity",
            "updated_at": f"strftime(TRY_CAST(updated_at AS TIMESTAMP) + INTERVAL "
            f"{CORRECTION_DAYS} DAY, '%Y-%m-%d %H:%M:%S') AS updated_at",
        }.get(c, c)
        for c in columns
    )
    con.execute(
        f"""CREATE VIEW drops AS
        SELECT {", ".join(columns)},
            {arrived} + CASE WHEN {_pick("purchase_id", "late", 0.02)} THEN {LATE_DAYS}
                ELSE 0 END AS _day, 0 AS _version
        FROM lines
        UNION ALL
        SELECT {corrected}, {arrived} + {CORRECTION_DAYS} AS _day, 1 AS _version
        FROM lines
        WHERE {_pick("purchase_id", "fix", CORRECTION_SHARE)} AND TRY_CAST(quantity AS BIGINT) > 0
            AND TRY_CAST(updated_at AS TIMESTAMP) IS NOT NULL"""
    )
    names = ", ".join(columns)
    con.execute(
        f"COPY (SELECT {names} FROM drops WHERE _day < ?) TO ? (HEADER)",
        [start, str(folder / f"{HISTORY}.csv")],
    )
    con.execute("CREATE TEMP TABLE recent AS SELECT * FROM drops WHERE _day >= ?", [start])
    return columns


def _write_days(
    con: duckdb.DuckDBPyConnection, folder: Path, start: date, columns: list[str]
) -> list[Path]:
    """One file per day from `start` on, from the table `recent`."""
    names = ", ".join(columns)
    days = [r[0] for r in con.execute("SELECT DISTINCT _day FROM recent ORDER BY 1").fetchall()]
    written = []
    for day in days:
        path = folder / f"{day.isoformat()}.csv"
        con.execute(
            f"COPY (SELECT {names} FROM recent WHERE _day = ? ORDER BY _version, purchase_id) "
            "TO ? (HEADER)",
            [day, str(path)],
        )
        written.append(path)
    return written


def day_of(path: Path) -> date | None:
    """The day a daily file holds, or None for the history file."""
    return None if path.stem == HISTORY else date.fromisoformat(path.stem)


def end_of(day: date) -> str:
    """The as_of of the refresh that follows a day's drop: the end of that day."""
    return (day + timedelta(days=1)).isoformat() + " 00:00:00"
