"""Ordered schema migrations, recorded in the database they were applied to.

Append only: a released migration is never edited, a change is a new entry with the
statements for every backend's SQL dialect. A database whose recorded version is newer
than the newest entry here was written by a newer idnode, and is refused rather than
guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

from idnode.errors import StorageError

__all__ = ["MIGRATIONS", "SEARCH_INDEX_VERSION", "Migration", "pending"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        """The statements in the SQL dialect named ``dialect``."""
        return self.sqlite if dialect == "sqlite" else self.postgresql


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "handles and homed prefixes",
        # key: the handle with ASCII letters upper-cased, handle: as registered.
        # values_wire: the values in Handle wire layout (count, then values), so a
        # resolution sends them without a second format in between.
        sqlite=(
            """CREATE TABLE handles (
                key         TEXT PRIMARY KEY,
                handle      TEXT NOT NULL,
                values_wire BLOB NOT NULL,
                updated_at  INTEGER NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE prefixes (
                key    TEXT PRIMARY KEY,
                prefix TEXT NOT NULL
            ) WITHOUT ROWID""",
        ),
        # COLLATE "C": prefix listings are key ranges ["P/", "P0"), which need byte
        # order whatever the database's default collation is.
        postgresql=(
            """CREATE TABLE handles (
                key         TEXT COLLATE "C" PRIMARY KEY,
                handle      TEXT NOT NULL,
                values_wire BYTEA NOT NULL,
                updated_at  BIGINT NOT NULL
            )""",
            """CREATE TABLE prefixes (
                key    TEXT COLLATE "C" PRIMARY KEY,
                prefix TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "resolution and registration counts per prefix and hour",
        # hour: Unix time of the start of the hour (a multiple of 3600), UTC.
        sqlite=(
            """CREATE TABLE stats (
                prefix        TEXT NOT NULL,
                hour          INTEGER NOT NULL,
                resolutions   INTEGER NOT NULL DEFAULT 0,
                not_found     INTEGER NOT NULL DEFAULT 0,
                registrations INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (prefix, hour)
            ) WITHOUT ROWID""",
        ),
        postgresql=(
            """CREATE TABLE stats (
                prefix        TEXT COLLATE "C" NOT NULL,
                hour          BIGINT NOT NULL,
                resolutions   BIGINT NOT NULL DEFAULT 0,
                not_found     BIGINT NOT NULL DEFAULT 0,
                registrations BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (prefix, hour)
            )""",
        ),
    ),
    Migration(
        3,
        "audit log of writes",
        # One row per write, in the write's own transaction. before/after: the record's
        # values in wire layout, NULL when the handle did not or no longer exists.
        sqlite=(
            """CREATE TABLE audit (
                id        INTEGER PRIMARY KEY AUTOINCREMENT,
                at        REAL NOT NULL,
                actor     TEXT NOT NULL,
                origin    TEXT NOT NULL,
                operation TEXT NOT NULL,
                key       TEXT NOT NULL,
                handle    TEXT NOT NULL,
                before    BLOB,
                after     BLOB
            )""",
            "CREATE INDEX audit_by_key ON audit (key, id)",
            "CREATE INDEX audit_by_actor ON audit (actor, id)",
        ),
        postgresql=(
            """CREATE TABLE audit (
                id        BIGSERIAL PRIMARY KEY,
                at        DOUBLE PRECISION NOT NULL,
                actor     TEXT NOT NULL,
                origin    TEXT NOT NULL,
                operation TEXT NOT NULL,
                key       TEXT COLLATE "C" NOT NULL,
                handle    TEXT NOT NULL,
                before    BYTEA,
                after     BYTEA
            )""",
            "CREATE INDEX audit_by_key ON audit (key, id)",
            "CREATE INDEX audit_by_actor ON audit (actor, id)",
        ),
    ),
    Migration(
        4,
        "HTTP API sessions",
        # Kept in the database, not in a worker's memory, so that a session opened on
        # one worker process is known to the others (--workers N shares one port).
        # identity: "index:handle" once the session has authenticated, else NULL.
        sqlite=(
            """CREATE TABLE sessions (
                id       TEXT PRIMARY KEY,
                nonce    BLOB NOT NULL,
                identity TEXT,
                expires  REAL NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX sessions_by_expiry ON sessions (expires)",
        ),
        postgresql=(
            """CREATE TABLE sessions (
                id       TEXT COLLATE "C" PRIMARY KEY,
                nonce    BYTEA NOT NULL,
                identity TEXT,
                expires  DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX sessions_by_expiry ON sessions (expires)",
        ),
    ),
    Migration(
        5,
        "statistics reported by other nodes",
        # One row per source node (as it names itself), prefix and hour, holding that
        # hour's totals as last reported: a new report of the same hour replaces it.
        # reported_by: the identity that sent it; received: when, Unix time.
        sqlite=(
            """CREATE TABLE reported_stats (
                source        TEXT NOT NULL,
                prefix        TEXT NOT NULL,
                hour          INTEGER NOT NULL,
                resolutions   INTEGER NOT NULL,
                not_found     INTEGER NOT NULL,
                registrations INTEGER NOT NULL,
                reported_by   TEXT NOT NULL,
                received      REAL NOT NULL,
                PRIMARY KEY (source, prefix, hour)
            ) WITHOUT ROWID""",
        ),
        postgresql=(
            """CREATE TABLE reported_stats (
                source        TEXT COLLATE "C" NOT NULL,
                prefix        TEXT COLLATE "C" NOT NULL,
                hour          BIGINT NOT NULL,
                resolutions   BIGINT NOT NULL,
                not_found     BIGINT NOT NULL,
                registrations BIGINT NOT NULL,
                reported_by   TEXT NOT NULL,
                received      DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (source, prefix, hour)
            )""",
        ),
    ),
    Migration(
        6,
        "search index of public values",
        # fields: a row per public text value (name = its type in capitals). The word
        # index holds a document per record (SQLite: fields_docs numbers the records
        # for FTS5's integer rowids). Existing records are indexed when this runs.
        sqlite=(
            """CREATE TABLE fields (
                key    TEXT NOT NULL,
                name   TEXT NOT NULL,
                text   TEXT NOT NULL,
                number REAL
            )""",
            "CREATE INDEX fields_by_text ON fields (name, text, key)",
            "CREATE INDEX fields_by_number ON fields (name, number, key) WHERE number IS NOT NULL",
            "CREATE INDEX fields_by_key ON fields (key)",
            "CREATE TABLE fields_docs (docid INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)",
            "CREATE VIRTUAL TABLE fields_text USING fts5(body, tokenize = 'unicode61')",
        ),
        postgresql=(
            """CREATE TABLE fields (
                key    TEXT COLLATE "C" NOT NULL,
                name   TEXT COLLATE "C" NOT NULL,
                text   TEXT COLLATE "C" NOT NULL,
                number DOUBLE PRECISION
            )""",
            "CREATE INDEX fields_by_text ON fields (name, text, key)",
            "CREATE INDEX fields_by_number ON fields (name, number, key) WHERE number IS NOT NULL",
            "CREATE INDEX fields_by_key ON fields (key)",
            """CREATE TABLE fields_text (
                key  TEXT COLLATE "C" PRIMARY KEY,
                body TSVECTOR NOT NULL
            )""",
            "CREATE INDEX fields_text_body ON fields_text USING GIN (body)",
        ),
    ),
    Migration(
        7,
        "search index rows kept by record (SQLite)",
        # The rows of a record side by side in the table itself, found by key for
        # removal, instead of a table and an index by key: one B-tree fewer to insert
        # into (some 5 s of a million-record bulk load) and a smaller file. A record
        # holding one type's text twice has one row for it.
        sqlite=(
            """CREATE TABLE fields_by_record (
                key    TEXT NOT NULL,
                name   TEXT NOT NULL,
                text   TEXT NOT NULL,
                number REAL,
                PRIMARY KEY (key, name, text)
            ) WITHOUT ROWID""",
            "INSERT OR IGNORE INTO fields_by_record SELECT key, name, text, number FROM fields",
            "DROP TABLE fields",
            "ALTER TABLE fields_by_record RENAME TO fields",
            "CREATE INDEX fields_by_text ON fields (name, text)",
            "CREATE INDEX fields_by_number ON fields (name, number) WHERE number IS NOT NULL",
        ),
        postgresql=(),
    ),
    Migration(
        8,
        "Handle protocol sessions",
        # They share the sessions table (ids "handle:<n>", the session key in nonce);
        # counter: the highest message counter accepted in the session; seen: a bitmap
        # of those accepted below it (bit i: counter - 1 - i), so that a replayed
        # message is refused even when messages arrive out of order.
        sqlite=(
            "ALTER TABLE sessions ADD COLUMN counter INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE sessions ADD COLUMN seen INTEGER NOT NULL DEFAULT 0",
        ),
        postgresql=(
            "ALTER TABLE sessions ADD COLUMN counter BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE sessions ADD COLUMN seen BIGINT NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        9,
        "password accounts",
        # For clients that log in with a user name and password (CAICT's ID-SDK,
        # opcode 2000). An account acts as an identity (index:handle), whose
        # permissions it has; only a salted slow hash of the password is kept.
        sqlite=(
            """CREATE TABLE accounts (
                name     TEXT PRIMARY KEY,
                identity TEXT NOT NULL,
                password TEXT NOT NULL,
                created  INTEGER NOT NULL
            )""",
        ),
        postgresql=(
            """CREATE TABLE accounts (
                name     TEXT PRIMARY KEY,
                identity TEXT NOT NULL,
                password TEXT NOT NULL,
                created  BIGINT NOT NULL
            )""",
        ),
    ),
    Migration(
        10,
        "EPCIS events",
        # The traceability repository (storage/events.py): events with their indexed
        # facts and the event as captured (body, JSON), unique by event_key (the first
        # 16 bytes of the SHA-256 of the eventID: a hash ID is 90 characters, and an
        # index of them outgrows the cache at a million events) within its owner, so
        # that two enterprises may both hold one event and neither learns of the
        # other's; the identifiers each names, by
        # role (keyed identifier first: an identifier's events and each genealogy step
        # are range reads); the enterprises and reader groups events are kept for; and
        # capture jobs. seq is the order of capture; times are milliseconds, UTC.
        sqlite=(
            """CREATE TABLE epcis_events (
                seq               INTEGER PRIMARY KEY,
                event_key         BLOB NOT NULL,
                event_id          TEXT NOT NULL,
                event_type        TEXT NOT NULL,
                event_time        INTEGER NOT NULL,
                record_time       INTEGER NOT NULL,
                action            TEXT NOT NULL,
                biz_step          TEXT NOT NULL,
                disposition       TEXT NOT NULL,
                read_point        TEXT NOT NULL,
                biz_location      TEXT NOT NULL,
                transformation_id TEXT NOT NULL,
                owner             TEXT NOT NULL,
                access            INTEGER NOT NULL,
                readers           TEXT NOT NULL,
                capture_id        TEXT NOT NULL,
                body              TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX epcis_events_key ON epcis_events (event_key, owner)",
            "CREATE INDEX epcis_events_time ON epcis_events (event_time, seq)",
            "CREATE INDEX epcis_events_record ON epcis_events (record_time, seq)",
            "CREATE INDEX epcis_events_step ON epcis_events (biz_step, seq)",
            "CREATE INDEX epcis_events_disposition ON epcis_events (disposition, seq)",
            "CREATE INDEX epcis_events_read_point ON epcis_events (read_point, seq)",
            "CREATE INDEX epcis_events_location ON epcis_events (biz_location, seq)",
            "CREATE INDEX epcis_events_transformation ON epcis_events (transformation_id)",
            """CREATE TABLE epcis_identifiers (
                identifier TEXT NOT NULL,
                role       TEXT NOT NULL,
                seq        INTEGER NOT NULL,
                PRIMARY KEY (identifier, role, seq)
            ) WITHOUT ROWID""",
            "CREATE INDEX epcis_identifiers_event ON epcis_identifiers (seq)",
            """CREATE TABLE epcis_audiences (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                PRIMARY KEY (kind, name)
            )""",
            """CREATE TABLE epcis_captures (
                id         TEXT PRIMARY KEY,
                actor      TEXT NOT NULL,
                owner      TEXT NOT NULL,
                created    INTEGER NOT NULL,
                finished   INTEGER,
                success    INTEGER,
                events     INTEGER NOT NULL,
                duplicates INTEGER NOT NULL,
                errors     TEXT NOT NULL
            )""",
            "CREATE INDEX epcis_captures_owner ON epcis_captures (owner, created)",
        ),
        postgresql=(
            """CREATE TABLE epcis_events (
                seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_key         BYTEA NOT NULL,
                event_id          TEXT NOT NULL,
                event_type        TEXT NOT NULL,
                event_time        BIGINT NOT NULL,
                record_time       BIGINT NOT NULL,
                action            TEXT NOT NULL,
                biz_step          TEXT NOT NULL,
                disposition       TEXT NOT NULL,
                read_point        TEXT NOT NULL,
                biz_location      TEXT NOT NULL,
                transformation_id TEXT NOT NULL,
                owner             TEXT NOT NULL,
                access            INTEGER NOT NULL,
                readers           TEXT NOT NULL,
                capture_id        TEXT NOT NULL,
                body              TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX epcis_events_key ON epcis_events (event_key, owner)",
            "CREATE INDEX epcis_events_time ON epcis_events (event_time, seq)",
            "CREATE INDEX epcis_events_record ON epcis_events (record_time, seq)",
            "CREATE INDEX epcis_events_step ON epcis_events (biz_step, seq)",
            "CREATE INDEX epcis_events_disposition ON epcis_events (disposition, seq)",
            "CREATE INDEX epcis_events_read_point ON epcis_events (read_point, seq)",
            "CREATE INDEX epcis_events_location ON epcis_events (biz_location, seq)",
            "CREATE INDEX epcis_events_transformation ON epcis_events (transformation_id)",
            """CREATE TABLE epcis_identifiers (
                identifier TEXT COLLATE "C" NOT NULL,
                role       TEXT NOT NULL,
                seq        BIGINT NOT NULL,
                PRIMARY KEY (identifier, role, seq)
            )""",
            "CREATE INDEX epcis_identifiers_event ON epcis_identifiers (seq)",
            """CREATE TABLE epcis_audiences (
                kind TEXT COLLATE "C" NOT NULL,
                name TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (kind, name)
            )""",
            """CREATE TABLE epcis_captures (
                id         TEXT COLLATE "C" PRIMARY KEY,
                actor      TEXT NOT NULL,
                owner      TEXT NOT NULL,
                created    BIGINT NOT NULL,
                finished   BIGINT,
                success    INTEGER,
                events     INTEGER NOT NULL,
                duplicates INTEGER NOT NULL,
                errors     TEXT NOT NULL
            )""",
            "CREATE INDEX epcis_captures_owner ON epcis_captures (owner, created)",
        ),
    ),
    Migration(
        11,
        "EPCIS named queries and subscriptions",
        # A subscription remembers the last event it delivered (last_seq, in capture
        # order), when it is next due, and a lease (lease_until, ms) that one worker
        # takes before delivering, so that two workers never push the same events.
        sqlite=(
            """CREATE TABLE epcis_queries (
                name    TEXT PRIMARY KEY,
                actor   TEXT NOT NULL,
                query   TEXT NOT NULL,
                created INTEGER NOT NULL
            )""",
            """CREATE TABLE epcis_subscriptions (
                id                  TEXT PRIMARY KEY,
                query_name          TEXT NOT NULL,
                actor               TEXT NOT NULL,
                dest                TEXT NOT NULL,
                secret              TEXT NOT NULL,
                schedule            TEXT NOT NULL,
                report_if_empty     INTEGER NOT NULL,
                initial_record_time INTEGER NOT NULL,
                created             INTEGER NOT NULL,
                last_seq            INTEGER NOT NULL,
                next_due            INTEGER NOT NULL,
                lease_until         INTEGER NOT NULL,
                failures            INTEGER NOT NULL,
                last_error          TEXT NOT NULL,
                delivered           INTEGER NOT NULL
            )""",
            "CREATE INDEX epcis_subscriptions_due ON epcis_subscriptions (next_due)",
            "CREATE INDEX epcis_subscriptions_query ON epcis_subscriptions (query_name)",
        ),
        postgresql=(
            """CREATE TABLE epcis_queries (
                name    TEXT COLLATE "C" PRIMARY KEY,
                actor   TEXT NOT NULL,
                query   TEXT NOT NULL,
                created BIGINT NOT NULL
            )""",
            """CREATE TABLE epcis_subscriptions (
                id                  TEXT COLLATE "C" PRIMARY KEY,
                query_name          TEXT NOT NULL,
                actor               TEXT NOT NULL,
                dest                TEXT NOT NULL,
                secret              TEXT NOT NULL,
                schedule            TEXT NOT NULL,
                report_if_empty     INTEGER NOT NULL,
                initial_record_time BIGINT NOT NULL,
                created             BIGINT NOT NULL,
                last_seq            BIGINT NOT NULL,
                next_due            BIGINT NOT NULL,
                lease_until         BIGINT NOT NULL,
                failures            INTEGER NOT NULL,
                last_error          TEXT NOT NULL,
                delivered           BIGINT NOT NULL
            )""",
            "CREATE INDEX epcis_subscriptions_due ON epcis_subscriptions (next_due)",
            "CREATE INDEX epcis_subscriptions_query ON epcis_subscriptions (query_name)",
        ),
    ),
)

#: The migration after which every existing record must be (re)indexed for search.
SEARCH_INDEX_VERSION = 6


def pending(current: int, database: str) -> list[Migration]:
    """The migrations a database at schema version ``current`` still needs, in order.

    Refuses a database written by a newer idnode (``database`` names it in the error).
    """
    newest = MIGRATIONS[-1].version
    if current > newest:
        raise StorageError(
            f"{database} has schema version {current}, newer than this idnode knows "
            f"({newest}); upgrade idnode"
        )
    return [m for m in MIGRATIONS if m.version > current]
