"""The audit log: one JSON line per request, whatever its outcome, written before the answer
leaves (a request that cannot be audited is not answered with data).

- Owner-only: the directory is 700 and the files 600, since entries hold callers and queries.
- Bounded: a string longer than FIELD_CHARS or a list longer than LIST_ITEMS is cut, and
  `truncated` records each cut field's path and full size.
- Rotating: past `max_bytes` the file becomes `<name>.1` (`.1` -> `.2` ...), `backups` kept.
- Countable: each entry carries the server instance and a sequence number taken when the
  request arrived, so a gap in a server's sequence is a request that was never audited.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIELD_CHARS = 1024
LIST_ITEMS = 200


def bounded(value: Any, path: str, cut: dict[str, int]) -> Any:
    """`value` with long strings and lists cut; each cut recorded in `cut` as path -> size."""
    if isinstance(value, str):
        if len(value) > FIELD_CHARS:
            cut[path] = len(value)
            return value[:FIELD_CHARS] + "…"
        return value
    if isinstance(value, dict):
        items = list(value.items())
        if len(items) > LIST_ITEMS:
            cut[path] = len(items)
            items = items[:LIST_ITEMS]
        return {bounded(str(k), f"{path}.<key>", cut): bounded(v, f"{path}.{str(k)[:64]}", cut)
                for k, v in items}  # fmt: skip
    if isinstance(value, list | tuple):
        if len(value) > LIST_ITEMS:
            cut[path] = len(value)
            value = value[:LIST_ITEMS]
        return [bounded(v, f"{path}[{i}]", cut) for i, v in enumerate(value)]
    return value


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024, backups: int = 10):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()

    def record(self, entry: dict) -> None:
        cut: dict[str, int] = {}
        entry = {k: bounded(v, k, cut) for k, v in entry.items()}
        if cut:
            entry["truncated"] = cut
        line = (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self._rotate_if_full(len(line))
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def _rotate_if_full(self, adding: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + adding <= self.max_bytes:
            return
        for n in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if n == self.backups:
                older.unlink(missing_ok=True)
            else:
                newer = self.path.with_name(f"{self.path.name}.{n + 1}")
                if older.exists():
                    older.replace(newer)
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def files(self) -> list[Path]:
        """The log's files, oldest first."""
        rotated = [self.path.with_name(f"{self.path.name}.{n}") for n in range(self.backups, 0, -1)]
        return [p for p in [*rotated, self.path] if p.exists()]

    def entries(self) -> Iterator[dict]:
        """Every entry still on disk, oldest first (a torn last line is skipped)."""
        for path in self.files():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue

    def read(self) -> list[dict]:
        return list(self.entries())
