"""SLO checks on the source-aligned assets, from each source's own descriptor.

They measure the landing data through the contract (the landing audit): what was loaded, or,
when the landing files changed since the last load, what the next load would take in.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pandera.pandas as pa

from retail_dp.descriptors import Catalog, DataProduct, LandingInput, SloCategory
from retail_dp.quality.slo import MeasureContext, Measurement, SloCheck, ratio
from retail_dp.sources.audit import (
    COMPLETENESS_REASONS,
    UNIQUENESS_REASONS,
    LandingAudit,
    audit_judgement,
    expected_types,
    fingerprint,
    load_audit,
)
from retail_dp.sources.contracts import build_contracts
from retail_dp.sources.ingest import (
    QUARANTINE,
    drop_judgement,
    judge,
    judging,
    read_suppression_list,
    table,
)
from retail_dp.sources.landing import (
    LandingError,
    check_file_columns,
    file_columns,
    find_landing_files,
    in_source_folder,
)


def freshness_column(product: DataProduct) -> str | None:
    return product.slos[SloCategory.freshness].column


def current_audit(
    ctx: MeasureContext, product: DataProduct, schema: pa.DataFrameSchema
) -> tuple[LandingAudit, str]:
    """The audit of the landing files as they are now, and where it came from."""
    landing = next(i for i in product.inputs if isinstance(i, LandingInput))
    files = find_landing_files(ctx.data_dir, landing.location, schema.name)
    stored = load_audit(ctx.con, schema.name)
    if stored and stored.fingerprint == fingerprint(files) and stored.as_of == _iso(ctx.as_of):
        return stored, f"landing files as loaded by run {stored.run_id}"
    for path in files.all:
        # names the file and column, not a SQL error; a daily drop may hold no rows
        drop = in_source_folder(path, ctx.data_dir, landing.location)
        check_file_columns(ctx.con, path, schema, rows_required=not drop)
    with judging(ctx.con):
        try:
            # the same rows the load would take: erased customers stay out of the audit too
            rows = judge(ctx.con, schema, files, ctx.as_of, read_suppression_list(ctx.data_dir))
            audit = audit_judgement(
                ctx.con, schema, files, rows, ctx.as_of, freshness_column(product), ctx.run_id
            )
        finally:
            drop_judgement(ctx.con)
    why = "changed since the last load" if stored else "not loaded yet"
    return audit, f"landing files {why}, audited without loading"


def _iso(value: datetime) -> str:
    return value.isoformat(sep=" ")


def _source_checks(product: DataProduct, schema: pa.DataFrameSchema) -> list[SloCheck]:
    key = dg.AssetKey(schema.name)
    contract_key = schema.metadata["key"]

    def audited(ctx: MeasureContext) -> tuple[LandingAudit, dict]:
        audit, source = current_audit(ctx, product, schema)
        return audit, {
            "measured_on": source,
            "rows_read": audit.rows_read,
            "rows_deferred": audit.rows_deferred,
        }

    def completeness(ctx: MeasureContext) -> Measurement:
        audit, meta = audited(ctx)
        rates = {c: ratio(n, audit.rows_judged) for c, n in audit.nulls.items()}
        worst = min(rates, key=rates.get) if rates else None
        violation = (
            f"{audit.accepted_key_nulls} accepted rows have no {contract_key}"
            if audit.accepted_key_nulls
            else None
        )
        return Measurement(
            rates[worst] if worst else 1.0,
            {**meta, "missing_by_column": audit.nulls, "worst_column": worst},
            violation,
        )

    def uniqueness(ctx: MeasureContext) -> Measurement:
        audit, meta = audited(ctx)
        duplicates = sum(audit.rejected_for(UNIQUENESS_REASONS).values())
        violation = (
            f"{audit.accepted_key_duplicates} duplicate {contract_key} values among accepted rows"
            if audit.accepted_key_duplicates
            else None
        )
        return Measurement(
            ratio(duplicates, audit.rows_judged),
            {**meta, "duplicate_rows": duplicates, "key": contract_key},
            violation,
        )

    def validity(ctx: MeasureContext) -> Measurement:
        audit, meta = audited(ctx)
        invalid = audit.rejected_for(COMPLETENESS_REASONS + UNIQUENESS_REASONS, include=False)
        total = sum(invalid.values()) + sum(audit.warnings.values())
        return Measurement(
            ratio(total, audit.rows_judged),
            {
                **meta,
                "invalid_rows": total,
                "rejected_by_rule": invalid,
                "kept_but_invalid": audit.warnings,
            },
            note=", ".join(
                f"{n} {why}"
                for why, n in sorted({**invalid, **audit.warnings}.items(), key=lambda kv: -kv[1])[
                    :3
                ]
            )
            or None,
        )

    def freshness(ctx: MeasureContext) -> Measurement:
        audit, meta = audited(ctx)
        if audit.newest is None:
            return Measurement(None, meta, "no accepted rows to date the data by")
        newest = datetime.fromisoformat(audit.newest)
        hours = max((ctx.as_of - newest).total_seconds() / 3600, 0.0)
        return Measurement(
            round(hours, 2), {**meta, "newest": audit.newest, "newest_of": audit.newest_of}
        )

    def schema_check(ctx: MeasureContext) -> Measurement:
        expected = expected_types(schema)
        landing = next(i for i in product.inputs if isinstance(i, LandingInput))
        problems: list[str] = []
        try:
            files = find_landing_files(ctx.data_dir, landing.location, schema.name)
        except LandingError as exc:
            return Measurement(None, {}, str(exc))
        checked = 0
        for path in files.all:
            found = file_columns(ctx.con, path)
            for col in expected:
                checked += 1
                if col not in found:
                    problems.append(f"{path.name}: column {col!r} is missing")
            problems += [
                f"{path.name}: column {c!r} is not in the contract"
                for c in found
                if c not in expected
            ]
        warehouse = dict(
            ctx.con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'sources' AND table_name = ?",
                [schema.name],
            ).fetchall()
        )
        for col, typ in expected.items():
            checked += 1
            if warehouse.get(col) != typ:
                found = warehouse.get(col, "no column")
                problems.append(f"{table(schema.name)}.{col}: expected {typ}, found {found}")
        return Measurement(
            ratio(len(problems), checked),
            {"expected_columns": expected, "problems": problems[:50]},
            note="; ".join(problems[:5]) or None,
        )

    def accuracy(ctx: MeasureContext) -> Measurement:
        stored = load_audit(ctx.con, schema.name)
        if stored is None:
            return Measurement(None, {}, f"{schema.name} has not been loaded")
        accepted = ctx.con.execute(f"SELECT count(*) FROM {table(schema.name)}").fetchall()[0][0]
        quarantined = ctx.con.execute(
            f"SELECT count(*) FROM {QUARANTINE} WHERE source = ?", [schema.name]
        ).fetchall()[0][0]
        gap = abs(stored.rows_read - accepted - quarantined - stored.rows_deferred)
        return Measurement(
            ratio(gap, stored.rows_read),
            {
                "rows_read": stored.rows_read,
                "rows_accepted": accepted,
                "rows_quarantined": quarantined,
                "rows_deferred": stored.rows_deferred,
                "loaded_by_run": stored.run_id,
            },
            f"read {stored.rows_read} but accepted {accepted} + quarantined {quarantined} "
            f"+ deferred {stored.rows_deferred}"
            if gap
            else None,
        )

    measures = {
        SloCategory.completeness: (
            completeness,
            f"Share of landing rows with every required column present; {contract_key} is "
            "never null among accepted rows.",
        ),
        SloCategory.uniqueness: (
            uniqueness,
            f"Share of landing rows that are not an older duplicate of a {contract_key}; "
            f"{contract_key} is unique among accepted rows.",
        ),
        SloCategory.validity: (
            validity,
            "Share of landing rows that pass every contract rule (types, ranges, sets, "
            "references, and the descriptor's warning rules such as the email format); rows dated "
            "after as_of are deferred and not counted.",
        ),
        SloCategory.freshness: (
            freshness,
            "Hours between the newest accepted data and as_of.",
        ),
        SloCategory.schema: (
            schema_check,
            "Share of contract columns present, with their types, in each landing file and in "
            "the warehouse table.",
        ),
        SloCategory.accuracy: (
            accuracy,
            "Rows read reconcile with rows accepted, quarantined and deferred (dated after as_of).",
        ),
    }
    return [
        SloCheck(key, product, category, description, fn)
        for category, (fn, description) in measures.items()
        if category in product.slos
    ]


def source_checks(catalog: Catalog) -> list[SloCheck]:
    return [
        check
        for name, schema in build_contracts(catalog).items()
        for check in _source_checks(catalog[name], schema)
    ]
