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


def reader_sql(files: LandingFiles, columns: list[str]) -> str:
    """One SELECT over all files, every contract column as VARCHAR plus `_file`."""
    as_text = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in columns)
    parts = []
    if files.csv:
        paths = ", ".join(f"'{p}'" for p in files.csv)
        parts.append(
            f"SELECT {as_text}, _file FROM read_csv([{paths}], header = true, all_varchar = true, "
            "union_by_name = true, filename = '_file')"
        )
    if files.parquet:
        paths = ", ".join(f"'{p}'" for p in files.parquet)
        parts.append(
            f"SELECT {as_text}, _file FROM read_parquet([{paths}], union_by_name = true, "
            "filename = '_file')"
        )
    return " UNION ALL BY NAME ".join(parts)


def check_file_columns(con: duckdb.DuckDBPyConnection, path: Path, schema: pa.DataFrameSchema):
    """Fail with the file and column when a file is empty or its columns break the contract."""
    if path.stat().st_size == 0:
        raise LandingError(f"{path}: the file is empty (0 bytes); expected columns {_cols(schema)}")
    if path.suffix == ".csv":
        relation = f"read_csv('{path}', header = true, all_varchar = true)"
    else:
        relation = f"read_parquet('{path}')"
    try:
        columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        rows = con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    except duckdb.Error as exc:
        raise LandingError(f"{path}: cannot be read as {path.suffix[1:]}: {exc}") from exc
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
    if rows == 0:
        raise LandingError(f"{path}: the file has a header but no rows")


def _cols(schema: pa.DataFrameSchema) -> str:
    return ", ".join(schema.columns)
