"""The fitted models a run re-scores with between refits.

Every refit saves what scoring needs (the CLV purchase and spend models, the cross-sell
scorer, its ranking choice and its activity model) in `reference.model_fits`, one row per
model and fit; the runs between refits load the newest and score every customer at their own
as_of. The models are pickled dataclasses of floats and arrays: the warehouse is written only
by this code location's runs, so it is trusted as the code is. The last KEEP fits per model
are kept, so an analyst can see what scored when.
"""

from __future__ import annotations

import pickle
from datetime import datetime
from typing import Any

import duckdb

from retail_dp.resources import MODEL_FITS

KEEP = 10
DDL = f"""CREATE TABLE IF NOT EXISTS {MODEL_FITS} (
    model VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    run_id VARCHAR,
    fitted_at TIMESTAMP NOT NULL,
    fit_status VARCHAR,
    fitted BLOB NOT NULL
)"""


def save_fit(
    con: duckdb.DuckDBPyConnection,
    model: str,
    as_of: datetime,
    run_id: str | None,
    fitted: Any,
    fit_status: str | None = None,
) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS reference")
    con.execute(DDL)
    con.execute(
        f"INSERT INTO {MODEL_FITS} VALUES (?, ?, ?, now()::TIMESTAMP, ?, ?)",
        [model, as_of, run_id, fit_status, pickle.dumps(fitted, protocol=5)],
    )
    con.execute(
        f"""DELETE FROM {MODEL_FITS} WHERE model = ? AND fitted_at NOT IN (
            SELECT fitted_at FROM {MODEL_FITS} WHERE model = ?
            ORDER BY fitted_at DESC LIMIT {KEEP})""",
        [model, model],
    )


def load_fit(con: duckdb.DuckDBPyConnection, model: str) -> tuple[datetime, Any]:
    """The newest fit of `model` and the as_of it was fitted at."""
    rows = con.execute(
        f"SELECT as_of, fitted FROM {MODEL_FITS} WHERE model = ? ORDER BY fitted_at DESC LIMIT 1",
        [model],
    ).fetchall()
    if not rows:
        raise LookupError(f"no saved fit of {model} in {MODEL_FITS}: refit first")
    return rows[0][0], pickle.loads(rows[0][1])
