"""Who can see what: the access matrix of the policies (per group and per caller: members,
masking, rows), PII masking coverage, and access reviews (`retail-dp access-review`).

A review writes the matrix as CSV and Markdown and appends a record (date, reviewer, the
policy file's digest, the files written) to `access_reviews.jsonl` beside the policy file,
which the governance SLO "access reviewed within N days" reads.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from retail_dp.delivery.policies import Caller, Policies
from retail_dp.delivery.semantic import Dimension, Measure, SemanticModel

REVIEWS = "access_reviews.jsonl"
COLUMNS = ["principal_kind", "principal", "groups", "member", "member_kind", "pii", "masking",
           "rows"]  # fmt: skip


@dataclass(frozen=True)
class Coverage:
    covered: int
    total: int
    gaps: list[str]  # "group: member" pairs whose masking no rule decides

    @property
    def share(self) -> float:
        return self.covered / self.total if self.total else 1.0


def masking_coverage(model: SemanticModel, policies: Policies) -> Coverage:
    """Every (group, PII dimension the group can see) pair needs a masking rule: the group's
    own (even `none`, a deliberate unmasking) or the model's classification. A pair with
    neither would fall back to redaction silently; it counts as a gap."""
    covered, gaps = 0, []
    pii = [d for t in model.tables.values() for d in t.dimensions if d.pii]
    for name, group in policies.file.groups.items():
        alone = Caller(name, (name,), "review")
        for dim in pii:
            if not policies.grants(alone, dim.member):
                continue
            explicit = any(fnmatch.fnmatchcase(dim.member, p) for p in group.masking)
            if explicit or dim.masking:
                covered += 1
            else:
                gaps.append(f"{name}: {dim.member}")
    return Coverage(covered, covered + len(gaps), gaps)


def access_matrix(model: SemanticModel, policies: Policies) -> list[dict]:
    """One row per (group or caller, member it can see): masking and rows. JWT subjects are
    not listed by name: they get the rows of the groups their token names."""
    principals = [("group", name, (name,)) for name in policies.file.groups]
    principals += [("caller" + (" (demo)" if c.demo else ""), c.name, tuple(c.groups))
                   for c in policies.file.callers]  # fmt: skip
    rows = []
    for kind, name, groups in principals:
        who = Caller(name, groups, "review")
        for item in model.all_members():
            if not policies.grants(who, item.member):
                continue
            is_dim = isinstance(item, Dimension)
            filters = policies.row_filters(who, item.member)
            rows.append(
                {
                    "principal_kind": kind,
                    "principal": name,
                    "groups": " ".join(groups),
                    "member": item.member,
                    "member_kind": "dimension" if is_dim else
                    "measure" if isinstance(item, Measure) else "segment",
                    "pii": "yes" if is_dim and item.pii else "no",
                    "masking": policies.masking(who, item) if is_dim else "-",
                    "rows": "all" if filters is None else " OR ".join(map(str, filters)),
                }
            )  # fmt: skip
    return rows


def markdown(rows: list[dict], reviewed_at: str, policies_path: Path, coverage: Coverage) -> str:
    lines = [
        f"# Access review, {reviewed_at}",
        "",
        f"Policies: `{policies_path}` (sha256 `{digest(policies_path)[:16]}`). PII masking "
        f"coverage: {coverage.covered}/{coverage.total}"
        + (f"; gaps: {', '.join(coverage.gaps)}" if coverage.gaps else "") + ".",
        "",
    ]  # fmt: skip
    by_principal: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_principal.setdefault((r["principal_kind"], r["principal"]), []).append(r)
    for (kind, name), items in by_principal.items():
        lines += [f"## {kind} `{name}` (groups: {items[0]['groups']})", "",
                  "| member | kind | PII | masking | rows |", "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| `{r['member']}` | {r['member_kind']} | {r['pii']} | {r['masking']} | "
                  f"{r['rows']} |" for r in items]  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def review(model: SemanticModel, policies: Policies, out: Path, reviewer: str) -> dict:
    """Write the matrix (CSV, Markdown) under `out` and record the review; returns the record."""
    now = datetime.now(UTC)
    rows = access_matrix(model, policies)
    coverage = masking_coverage(model, policies)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"access-review-{now:%Y%m%dT%H%M%SZ}"
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(markdown(rows, now.isoformat(timespec="seconds"), policies.source, coverage))
    record = {
        "reviewed_at": now.isoformat(timespec="seconds"),
        "reviewer": reviewer,
        "policies": str(policies.source),
        "policies_sha256": digest(policies.source),
        "rows": len(rows),
        "masking_coverage": f"{coverage.covered}/{coverage.total}",
        "csv": str(csv_path),
        "markdown": str(md_path),
    }
    with open(policies.source.parent / REVIEWS, "a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def last_review(policies_path: Path) -> dict | None:
    log = policies_path.parent / REVIEWS
    if not log.exists():
        return None
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return max(records, key=lambda r: r["reviewed_at"]) if records else None
