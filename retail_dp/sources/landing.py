"""Find a source's landing files and check them against the contract before reading them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandera.pandas as pa

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
CSV_OPTIONS = (
    f"header = true, all_varchar = true, max_line_size = {MAX_LINE_BYTES}, "
    f"buffer_size = {MAX_LINE_BYTES}"
)


def relation(path: Path) -> str:
    """A reader for one landing file; bind the path as its one parameter."""
    if path.suffix == ".csv":
        return f"read_csv(?, {CSV_OPTIONS})"
    return "read_parquet(?)"


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
