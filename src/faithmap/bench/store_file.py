"""The benchmark store's file: its SQLite schema, identity and version, and their checks.

A store is an SQLite database with the tables below, marked as faithmap's by SQLite's
``application_id`` (:data:`APPLICATION_ID`) and versioned by its ``user_version``
(:data:`SCHEMA_VERSION`). :func:`check_store_file` refuses, untouched, a file that is not a store
this version can read; :func:`create_schema` creates (or migrates) the tables in an open
transaction.

Schema versions (SQLite's ``user_version``): 1, the first; 2 adds ``runs.command``, the command
line that created the run. A version-1 store is migrated when opened (one ``ALTER TABLE`` in the
opening transaction; its runs get an empty command), so old stores stay readable.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from faithmap.errors import FileProblemError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    config_hash TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    versions TEXT NOT NULL,
    created TEXT NOT NULL,
    command TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tasks (
    run INTEGER NOT NULL REFERENCES runs(id),
    task TEXT NOT NULL,
    forward INTEGER NOT NULL,
    backward INTEGER NOT NULL,
    seconds REAL NOT NULL,
    finished TEXT NOT NULL,
    skipped TEXT,
    PRIMARY KEY (run, task)
);
CREATE TABLE IF NOT EXISTS results (
    run INTEGER NOT NULL REFERENCES runs(id),
    task TEXT NOT NULL,
    sample INTEGER NOT NULL,
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    higher_is_better INTEGER NOT NULL,
    target INTEGER NOT NULL,
    explain_forward REAL NOT NULL,
    explain_backward REAL NOT NULL,
    explain_seconds REAL NOT NULL,
    metric_forward REAL NOT NULL,
    metric_backward REAL NOT NULL,
    metric_seconds REAL NOT NULL,
    params TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    versions TEXT NOT NULL,
    UNIQUE (run, model, method, metric, sample)
);
CREATE TABLE IF NOT EXISTS maps (
    run INTEGER NOT NULL REFERENCES runs(id),
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    sample INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (run, model, method, sample)
);
CREATE TABLE IF NOT EXISTS curves (
    run INTEGER NOT NULL REFERENCES runs(id),
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    metric TEXT NOT NULL,
    sample INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (run, model, method, metric, sample)
);
CREATE TABLE IF NOT EXISTS findings (
    run INTEGER NOT NULL REFERENCES runs(id),
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (run, position)
);
"""


APPLICATION_ID = 0x46414D50
"""SQLite's application id of a faithmap store ("FAMP"), set when the store is created."""
SCHEMA_VERSION = 2
"""The store's schema version (SQLite's user_version); a newer one is refused, an older one
migrated (see the module docstring)."""
_TABLES = frozenset({"runs", "tasks", "results", "maps", "curves", "findings"})


def check_store_file(path: Path) -> None:
    """Raise unless ``path`` is missing, empty, or a faithmap store this version can read.

    Reads the file only (SQLite read-only mode): a file that is not faithmap's is refused
    untouched. A store written before the application id was set is recognised by its tables.

    Raises
    ------
    FileProblemError
        For a folder, a file that is not SQLite, a corrupt database, another program's SQLite
        file, or a store written by a newer faithmap.
    """
    if not path.exists():
        return
    if not path.is_file():
        raise FileProblemError(
            f"The store {str(path)!r} is not a file. Give a store file or folder."
        )
    with path.open("rb") as handle:
        header = handle.read(16)
    if not header:
        return
    if header != b"SQLite format 3\x00":
        raise FileProblemError(
            f"{str(path)!r} is not a faithmap store (not an SQLite database). Give another "
            "--out folder; the file was left as it was."
        )
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            application = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            connection.close()
    except sqlite3.DatabaseError as err:
        raise FileProblemError(
            f"The store {str(path)!r} is corrupt ({err}). Move it away and run again, or give "
            "another --out folder."
        ) from err
    ours = application == APPLICATION_ID or (application == 0 and tables <= _TABLES)
    if not ours:
        raise FileProblemError(
            f"{str(path)!r} is another program's SQLite database (tables: "
            f"{', '.join(sorted(tables)) or 'none'}), not a faithmap store; it was left "
            "untouched. Give another --out folder."
        )
    if version > SCHEMA_VERSION:
        raise FileProblemError(
            f"The store {str(path)!r} was written by a newer faithmap (schema {version}; this "
            f"one reads {SCHEMA_VERSION}). Upgrade faithmap, or give another --out folder."
        )


def create_schema(connection: sqlite3.Connection) -> None:
    """Create the tables of a store (migrating a version-1 store) and mark it as faithmap's,
    in the caller's transaction on ``connection``."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)
    columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    if "command" not in columns:  # a version-1 store
        connection.execute("ALTER TABLE runs ADD COLUMN command TEXT NOT NULL DEFAULT ''")
    connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
