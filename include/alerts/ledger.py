"""Which alerts were already sent: a table with one row per (event, receiver), claimed by insert.

Every worker process that may send an alert reaches the same database (the settings'
``alert_ledger``: a SQLite file under the local state folder, or the PostgreSQL database
the promotion lock uses), so a retried task, a cleared task or a second drifted window
finds the row its predecessor wrote. A claim is a plain ``INSERT`` on the primary key: of
two processes claiming the same key at once, the database lets exactly one succeed, with
no read-modify-write in between.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

TABLE = "mlops_alerts_sent"
# a locked SQLite file waits this long before the insert gives up (seconds)
SQLITE_BUSY_TIMEOUT_S = 10


def _driver_url(url: str) -> str:
    # a bare postgresql:// means psycopg 3 to SQLAlchemy 2.1; the project ships psycopg2
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url


class AlertLedger:
    """The sent-alerts table in the database at ``url`` (a SQLAlchemy URL: ``sqlite:///path`` or
    ``postgresql://...``), created on first use. Raises ``ValueError`` for a URL SQLAlchemy cannot
    read; database errors (``sqlalchemy.exc.SQLAlchemyError``) pass through every method."""

    def __init__(self, url: str):
        import sqlalchemy as sa
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = sa.engine.make_url(_driver_url(url))
        except ArgumentError as exc:
            raise ValueError(f"alert ledger URL is not a database URL: {exc}") from None
        self._sqlite_path = parsed.database if parsed.get_backend_name() == "sqlite" else None
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S} if self._sqlite_path else {}
        self._engine = sa.create_engine(parsed, poolclass=sa.pool.NullPool, connect_args=connect_args)
        self._table = sa.Table(
            TABLE,
            sa.MetaData(),
            # the key's SHA-256: a fixed-width primary key whatever the key's length
            sa.Column("key_hash", sa.String(64), primary_key=True),
            sa.Column("dedup_key", sa.Text, nullable=False),
            sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        )
        self._ready = False

    def _ensure_table(self) -> None:
        if self._ready:
            return
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

        if self._sqlite_path and self._sqlite_path != ":memory:":
            Path(self._sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._table.create(self._engine, checkfirst=True)
        except (IntegrityError, OperationalError, ProgrammingError):
            # another process created it between the check and the CREATE: use theirs
            self._table.create(self._engine, checkfirst=True)
        self._ready = True

    @staticmethod
    def _hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def claim(self, key: str) -> bool:
        """Record ``key`` as sent. True when this call recorded it, False when it was already there
        (another try or process claimed it: do not send again)."""
        from sqlalchemy.exc import IntegrityError

        self._ensure_table()
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    self._table.insert().values(key_hash=self._hash(key), dedup_key=key, claimed_at=datetime.now(UTC))
                )
        except IntegrityError:
            return False
        return True

    def release(self, key: str) -> None:
        """Forget ``key`` (the send it was claimed for failed), so that a later try may send it."""
        self._ensure_table()
        with self._engine.begin() as connection:
            connection.execute(self._table.delete().where(self._table.c.key_hash == self._hash(key)))

    def keys(self) -> list[str]:
        """Every claimed key, oldest first: a list of str."""
        self._ensure_table()
        with self._engine.connect() as connection:
            rows = connection.execute(self._table.select().order_by(self._table.c.claimed_at, self._table.c.dedup_key))
            return [row.dedup_key for row in rows]

    def close(self) -> None:
        """Drop the engine's connections (there are none between calls: it does not pool)."""
        self._engine.dispose()
