"""Find a source's landing files and check them against the contract before reading them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandera.pandas as pa

from retail_dp.sources.rules import literal

FORMATS = {".csv": "csv", ".parquet": "parquet"}


class LandingError(ValueError):
    """The landing zone does not honour the contract: names the file and the column."""


@dataclass(frozen=True)
class LandingFiles:
    source: str
    csv: tuple[Path, ...]
    parquet: tuple[Path, ...]

    @property
    def all(self) -> tuple[Path, ...]:
        return self.csv + self.parquet


def find_landing_files(data_dir: Path, location: str, source: str) -> LandingFiles:
    """A source is `<location>.csv`, `<location>.parquet` or a folder `<location>/` of them."""
    if not data_dir.is_dir():
        raise LandingError(f"{data_dir}: the landing zone is not a folder (source {source!r})")
    found: list[Path] = [data_dir / f"{location}{suffix}" for suffix in FORMATS]
    found = [p for p in found if p.is_file()]
    folder = data_dir / location
    if folder.is_dir():
        found += sorted(p for p in folder.iterdir() if p.suffix in FORMATS and p.is_file())
    if not found:
        raise LandingError(
            f"source {source!r}: no landing files at {data_dir / location}.csv, "
            f"{data_dir / location}.parquet or {folder}/"
        )
    return LandingFiles(
        source=source,
        csv=tuple(p for p in found if p.suffix == ".csv"),
        parquet=tuple(p for p in found if p.suffix == ".parquet"),
    )


# A line may be as long as this before the reader gives up on the whole file (one line naming
# it); a field longer than the contract's max_field_length is quarantined row by row instead.
# DuckDB sizes its read buffer from max_line_size, so the buffer is pinned to the same value:
# left to itself it grows to ~16x, which a 2 GB memory limit cannot hold on a large file.
MAX_LINE_BYTES = 64 << 20
READ_OPTIONS = f"header = true, max_line_size = {MAX_LINE_BYTES}, buffer_size = {MAX_LINE_BYTES}"
CSV_OPTIONS = f"{READ_OPTIONS}, all_varchar = true"

# The contract types DuckDB's CSV reader may parse itself, each in one strict text form for
# which its value is the contract's (rules.PARSERS): a file with any other form fails the
# typed read and is read as text. The strict formats matter: left to itself the reader takes
# `2026-01-05 10:00:00+02:00` as 10:00, dropping the offset the contract converts to UTC.
# Numbers are always read as text: the reader takes `1_000` and `0x10` as numbers, which the
# contract refuses, and the typed value no longer shows which text it came from.
TYPED_CSV_TYPES = ("TIMESTAMP", "DATE", "BOOLEAN")
TYPED_CSV_FORMATS = "timestampformat = '%Y-%m-%d %H:%M:%S', dateformat = '%Y-%m-%d'"
# The reader also takes the words `epoch` and `infinity` in those forms, which the contract
# refuses. Their values are the only ones that can hide them: a file holding one is read as
# text again (so is a file with a real 1970-01-01, which only costs time).
AMBIGUOUS_TYPED_VALUE = {
    "TIMESTAMP": "({x} = TIMESTAMP '1970-01-01' OR NOT isfinite({x}))",
    "DATE": "({x} = DATE '1970-01-01' OR NOT isfinite({x}))",
}


def relation(path: Path) -> str:
    """A reader for one landing file; bind the path as its one parameter."""
    if path.suffix == ".csv":
        return f"read_csv(?, {CSV_OPTIONS})"
    return "read_parquet(?)"


def typed_csv_relation(columns: list[str], types: dict[str, str]) -> str:
    """A CSV reader (bind the path) that types the columns in `types` (TYPED_CSV_TYPES) in
    their strict forms and reads the file's other `columns` as text; a value that is not in
    its form fails the read with a duckdb.ConversionException."""
    spec = ", ".join(f"{literal(c)}: {literal(types.get(c, 'VARCHAR'))}" for c in columns)
    return f"read_csv(?, {READ_OPTIONS}, types = {{{spec}}}, {TYPED_CSV_FORMATS})"


def file_columns(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    """A landing file's columns and the types DuckDB reads them as; LandingError if unreadable."""
    try:
        with path.open("rb"):
            pass
        rows = con.execute(f"DESCRIBE SELECT * FROM {relation(path)}", [str(path)]).fetchall()
    except OSError as exc:
        raise LandingError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise LandingError(f"{path}: cannot be read as {path.suffix[1:]}: {first}") from exc
    return {row[0]: row[1] for row in rows}


def in_source_folder(path: Path, data_dir: Path, location: str) -> bool:
    """Whether a file is one of a source folder's drops (`<location>/<file>`): a day with no
    rows is a header-only file there, not a broken extract."""
    return path.parent == data_dir / location


def check_file_columns(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    schema: pa.DataFrameSchema,
    rows_required: bool = True,
):
    """Fail with the file and column when a file is empty or its columns break the contract.
    A header without rows fails too, unless `rows_required` is off (a folder's daily drop)."""
    if path.stat().st_size == 0:
        raise LandingError(f"{path}: the file is empty (0 bytes); expected columns {_cols(schema)}")
    columns = list(file_columns(con, path))
    missing = [c for c in schema.columns if c not in columns]
    if missing:
        raise LandingError(
            f"{path}: column {missing[0]!r} is missing"
            + (f" (also {missing[1:]})" if len(missing) > 1 else "")
            + f"; the file has {columns}"
        )
    extra = [c for c in columns if c not in schema.columns]
    if extra and schema.strict:
        raise LandingError(f"{path}: column {extra[0]!r} is not in the {schema.name} contract")
    if not rows_required:
        return
    # one row is enough to know the file has some; counting them would read it all
    rows = con.execute(f"SELECT 1 FROM {relation(path)} LIMIT 1", [str(path)]).fetchall()
    if not rows:
        raise LandingError(f"{path}: the file has a header but no rows")


def _cols(schema: pa.DataFrameSchema) -> str:
    return ", ".join(schema.columns)
