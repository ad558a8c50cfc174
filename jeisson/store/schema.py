"""The SQLite store's schema, as an ordered list of migration steps.

``PRAGMA user_version`` holds how many steps a file has had.  Opening a
file runs the steps it lacks, each in its own transaction with the version
bump, so a crash between steps leaves a file at a known version.  A step is
never edited once released: a change to the schema is a new step appended
to ``MIGRATIONS``.  A file whose version is above ``len(MIGRATIONS)`` was
written by a newer jeisson and is refused (an older jeisson cannot know
what the newer one keeps).

Version 1:

``state(scope, key, value, updated)``
    The last value of each ``(scope, key)`` as compact JSON text, and the
    time it was written (UTC epoch seconds).  Never pruned.
``journal(id, at, kind, subject, round, detail)``
    Append-only; ``detail`` is compact JSON text (``{}`` when empty),
    ``round`` NULL when the entry is not about a round.  Indexed by
    ``(subject, at)`` and ``(kind, at)`` for queries, ``(at)`` for
    retention.
``measurements(subject, at, watts, span_s)``
    ``span_s`` 0 for a raw reading, else the width of the average that
    starts at ``at``.  Indexed by ``(subject, at)`` for queries,
    ``(span_s, at)`` for downsampling and retention (an hourly prune
    reaches the old rows without reading the whole table).
"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the first schema.
    (
        """CREATE TABLE state (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            updated REAL NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE journal (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            round INTEGER NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX journal_subject_at ON journal (subject, at)",
        "CREATE INDEX journal_kind_at ON journal (kind, at)",
        "CREATE INDEX journal_at ON journal (at)",
        """CREATE TABLE measurements (
            subject TEXT NOT NULL,
            at REAL NOT NULL,
            watts REAL NOT NULL,
            span_s REAL NOT NULL
        )""",
        "CREATE INDEX measurements_subject_at ON measurements (subject, at)",
        "CREATE INDEX measurements_span_at ON measurements (span_s, at)",
    ),
)

VERSION = len(MIGRATIONS)
"""The schema version this jeisson writes."""

TABLES = frozenset({"state", "journal", "measurements"})
