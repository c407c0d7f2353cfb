"""The benchmark's store: one SQLite file holding runs, finished tasks, rows, maps and curves.

A run is named by its configuration's hash (:attr:`BenchConfig.hash`), so a changed
configuration is a new run whose rows never mix with an old one. A task's rows, attribution
maps, curves and its done-marker are written in ONE transaction: a process killed at any
moment (``kill -9`` during a write included) leaves either all of a task or none of it, and a
resumed run skips exactly the tasks marked done. Unique constraints make a doubled row
impossible; when two processes finish the same task, the second finds it done and writes
nothing. The database runs in WAL mode, so readers never block the writer, and waits (busy
timeout, then retries with back-off) when another process holds the write lock.

The file itself (schema, identity, versions and their migration) is
:mod:`faithmap.bench.store_file`.

References
----------
Hipp et al., SQLite, "Atomic Commit In SQLite" and "Write-Ahead Logging" (sqlite.org), the
guarantees this module relies on.
"""

from __future__ import annotations

import json
import math
import platform
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol, TypeVar

from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

from faithmap.bench.store_file import APPLICATION_ID as APPLICATION_ID
from faithmap.bench.store_file import SCHEMA_VERSION as SCHEMA_VERSION
from faithmap.bench.store_file import check_store_file, create_schema
from faithmap.bench.work import Row, TaskResult
from faithmap.errors import InvalidParameterError

STORE_NAME = "bench.sqlite"
"""The store's file name inside a benchmark's output folder."""

T = TypeVar("T")


class RunConfig(Protocol):
    """What a run is opened with: a :class:`BenchConfig`, or the generation suite's
    :class:`~faithmap.bench.generation_suite.GenerationBenchConfig`."""

    @property
    def hash(self) -> str: ...

    def identity(self) -> dict[str, Any]: ...


_ROW_COLUMNS = (
    "model, method, metric, sample, value, target, explain_forward, explain_backward, "
    "explain_seconds, metric_forward, metric_backward, metric_seconds, params, higher_is_better"
)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide the numbers."""
    versions = {"python": platform.python_version()}
    for name in ("faithmap", "torch", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Run:
    """A run in the store: its number, configuration hash and record, versions, creation time
    (UTC, ISO 8601) and the command line that created it (empty when unknown)."""

    id: int
    config_hash: str
    config: dict[str, Any]
    versions: dict[str, str]
    created: str
    command: str = ""


class Store:
    """A benchmark store on disk; see the module docstring.

    Parameters
    ----------
    path : str or Path
        A ``.sqlite``, ``.sqlite3`` or ``.db`` file, or else a folder holding
        ``bench.sqlite``; created when missing.
    timeout : float, default=60.0
        Seconds to wait for another process's write lock before giving up.
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0) -> None:
        path = Path(path)
        is_file = path.suffix in (".sqlite", ".sqlite3", ".db") and not path.is_dir()
        self.path = path if is_file else path / STORE_NAME
        check_store_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._retry(lambda: self._connection.execute("PRAGMA journal_mode=WAL").fetchone())
        self._connection.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes
        self._connection.execute("PRAGMA foreign_keys=ON")
        self.transaction(create_schema)

    def close(self) -> None:
        """Close the connection (every transaction is already committed)."""
        self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retry(self, work: Callable[[], T]) -> T:
        deadline, pause = time.monotonic() + self.timeout, 0.01
        while True:
            try:
                return work()
            except sqlite3.OperationalError as err:
                busy = "locked" in str(err) or "busy" in str(err)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` in one write transaction, retried while the store is busy."""

        def attempt() -> T:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                value = work(self._connection)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
            return value

        return self._retry(attempt)

    def open_run(self, config: RunConfig, *, command: str = "") -> Run:
        """The run of ``config``: the stored one with the same hash, or a new one.

        ``command`` is the command line that runs it, kept with a new run (a resumed run keeps
        the command that created it).
        """
        record = json.dumps(config.identity(), sort_keys=True)
        versions = json.dumps(package_versions(), sort_keys=True)

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR IGNORE INTO runs (config_hash, config, versions, created, command) "
                "VALUES (?, ?, ?, ?, ?)",
                (config.hash, record, versions, _utc_now(), command),
            )

        self.transaction(insert)
        return self.run(config.hash)

    def runs(self) -> list[Run]:
        """Every run, oldest first."""
        query = "SELECT id, config_hash, config, versions, created, command FROM runs ORDER BY id"
        return [
            Run(int(i), str(h), json.loads(c), json.loads(v), str(t), str(command))
            for i, h, c, v, t, command in self._connection.execute(query)
        ]

    def run(self, which: str | int | None = None) -> Run:
        """A run by number or hash (a unique prefix is enough); ``None``: the latest."""
        runs = self.runs()
        if which is None and runs:
            return runs[-1]
        text = str(which)
        found = [r for r in runs if str(r.id) == text or r.config_hash.startswith(text)]
        if which is None or len(found) != 1:
            listing = ", ".join(f"{r.id} ({r.config_hash})" for r in runs) or "none"
            raise InvalidParameterError(
                f"No single run {which!r} in the store {str(self.path)!r}. Its runs are: {listing}."
            )
        return found[0]

    def done(self, run: Run) -> set[str]:
        """Ids of the run's finished tasks."""
        query = "SELECT task FROM tasks WHERE run = ?"
        return {str(task) for (task,) in self._connection.execute(query, (run.id,))}

    def skipped(self, run: Run) -> dict[str, str]:
        """Why each skipped task of the run was skipped (a method that does not apply)."""
        query = "SELECT task, skipped FROM tasks WHERE run = ? AND skipped IS NOT NULL"
        return {str(t): str(why) for t, why in self._connection.execute(query, (run.id,))}

    def write(self, run: Run, result: TaskResult) -> bool:
        """Store a task's rows, maps and curves and mark it done, in one transaction.

        Returns ``False`` (and writes nothing) when the task is already done, e.g. finished by
        a concurrent run of the same configuration.
        """
        task, versions = result.task, json.dumps(package_versions(), sort_keys=True)
        rows = [
            (
                run.id,
                task.id,
                row.sample,
                row.model,
                row.method,
                row.metric,
                row.value,
                int(row.higher_is_better),
                row.target,
                row.explain_forward,
                row.explain_backward,
                row.explain_seconds,
                row.metric_forward,
                row.metric_backward,
                row.metric_seconds,
                row.params,
                run.config_hash,
                versions,
            )
            for row in result.rows
        ]
        maps = [
            (run.id, task.model, task.method, task.start + i, save_tensors({"map": m.clone()}))
            for i, m in enumerate(result.maps)
        ]
        curves = [
            (
                run.id,
                task.model,
                task.method,
                metric,
                task.start + i,
                save_tensors({"fractions": fractions, "curve": curve[i].clone()}),
            )
            for metric, (fractions, curve) in result.curves.items()
            for i in range(curve.shape[0])
        ]

        def insert(connection: sqlite3.Connection) -> bool:
            marked = connection.execute(
                "INSERT OR IGNORE INTO tasks "
                "(run, task, forward, backward, seconds, finished, skipped) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    task.id,
                    result.cost.forward,
                    result.cost.backward,
                    result.cost.seconds,
                    _utc_now(),
                    result.skipped,
                ),
            )
            if marked.rowcount == 0:
                return False
            connection.executemany(f"INSERT INTO results VALUES ({', '.join('?' * 18)})", rows)
            connection.executemany("INSERT INTO maps VALUES (?, ?, ?, ?, ?)", maps)
            connection.executemany("INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?)", curves)
            return True

        return self.transaction(insert)

    def rows(self, run: Run) -> list[Row]:
        """The run's rows, in the order they were written (undefined values as NaN)."""
        query = f"SELECT {_ROW_COLUMNS} FROM results WHERE run = ? ORDER BY rowid"
        found = []
        for record in self._connection.execute(query, (run.id,)):
            model, method, metric, sample, value, target, *costs, params, higher = record
            found.append(
                Row(
                    model=str(model),
                    method=str(method),
                    metric=str(metric),
                    sample=int(sample),
                    value=math.nan if value is None else float(value),
                    target=int(target),
                    explain_forward=float(costs[0]),
                    explain_backward=float(costs[1]),
                    explain_seconds=float(costs[2]),
                    metric_forward=float(costs[3]),
                    metric_backward=float(costs[4]),
                    metric_seconds=float(costs[5]),
                    params=str(params),
                    higher_is_better=bool(higher),
                )
            )
        return found

    def maps(self, run: Run) -> dict[tuple[str, str], dict[int, Tensor]]:
        """Attribution maps ``(H, W)`` per (model, method), by sample."""
        found: dict[tuple[str, str], dict[int, Tensor]] = {}
        query = "SELECT model, method, sample, data FROM maps WHERE run = ?"
        for model, method, sample, data in self._connection.execute(query, (run.id,)):
            found.setdefault((model, method), {})[int(sample)] = load_tensors(data)["map"]
        return found

    def curves(self, run: Run) -> dict[tuple[str, str, str], dict[int, tuple[Tensor, Tensor]]]:
        """Fractions ``(K,)`` and curve ``(K,)`` per (model, method, metric), by sample."""
        found: dict[tuple[str, str, str], dict[int, tuple[Tensor, Tensor]]] = {}
        query = "SELECT model, method, metric, sample, data FROM curves WHERE run = ?"
        for model, method, metric, sample, data in self._connection.execute(query, (run.id,)):
            tensors = load_tensors(data)
            key = (model, method, metric)
            found.setdefault(key, {})[int(sample)] = (tensors["fractions"], tensors["curve"])
        return found

    def set_findings(self, run: Run, lines: Sequence[str]) -> None:
        """Replace the run's findings (a named suite's conclusions) in one transaction."""

        def replace(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM findings WHERE run = ?", (run.id,))
            connection.executemany(
                "INSERT INTO findings (run, position, text) VALUES (?, ?, ?)",
                [(run.id, i, line) for i, line in enumerate(lines)],
            )

        self.transaction(replace)

    def findings(self, run: Run) -> list[str]:
        """The run's findings, in order (empty unless a suite stated some)."""
        query = "SELECT text FROM findings WHERE run = ? ORDER BY position"
        return [str(text) for (text,) in self._connection.execute(query, (run.id,))]

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold one read snapshot for the ``with`` block (consistent reads across tables)."""
        self._connection.execute("BEGIN")
        try:
            yield
        finally:
            self._connection.execute("COMMIT")
