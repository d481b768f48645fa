"""``totpd rotate-keys``: re-encrypt every stored secret under the primary encryption key.

Rotation without downtime (docs/security.md):

1. Add a new key to the keys file and make it primary; restart/roll the servers. New
   writes use it, and the old key still opens what it sealed.
2. Run ``python -m totpd rotate-keys`` (same TOTPD_* environment as the servers). It walks
   every active and pending enrollment in bounded SCAN batches and re-seals, with a
   compare-and-set, whatever is not under the primary key: the TOTP secret and, of pending
   enrollments, the sealed recovery codes (whose digests it also re-hashes under the
   primary hashing key). Records under the primary key are left alone, so a second run,
   or one resumed with ``--cursor``, does nothing more than needed.
3. When it reports ``remaining 0``, remove the old encryption key from the keys file.

Recovery codes of active factors exist only as keyed hashes and cannot be re-hashed: the
report counts those still hashed under an old hashing key, which must stay in the keys
file until their users regenerate their codes.

Exit status: 0 done; 1 some records could not be opened (an unknown key id?) or a
startup error; 2 bad arguments or settings; 75 some records changed while being rotated
(activated, deleted, expired): run it again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import recovery_codes
from .config import ConfigError, Settings
from .errors import StoreUnavailable
from .keyring import DecryptionError, Keyring, KeyringError
from .service import RECOVERY_CODES_PURPOSE, SECRET_PURPOSE
from .store.redis_store import connect
from .store.rotation import Replacement, RotationStore, StoredRecord

log = logging.getLogger(__name__)

EXIT_RUN_AGAIN = 75  # EX_TEMPFAIL


@dataclass
class RotationReport:
    scanned: int = 0  # enrollments looked at
    rotated: int = 0  # re-sealed (and/or re-hashed) under the primary keys
    current: int = 0  # already under the primary keys
    changed: int = 0  # changed while being rotated: run again
    failed: int = 0  # could not be opened: unknown key id, or tampered with
    # Active factors whose recovery codes are hashed under an old hashing key, by key id.
    old_hashing_keys: Counter[str] = field(default_factory=Counter)
    cursor: int = 0  # where the last batch ended (0: the walk is complete)

    @property
    def remaining(self) -> int:
        """Records that may still be sealed under a non-primary key."""
        return self.changed + self.failed

    def summary(self) -> str:
        old = ", ".join(f"{k}: {n}" for k, n in sorted(self.old_hashing_keys.items()))
        return (
            f"scanned {self.scanned}, rotated {self.rotated}, already current {self.current}, "
            f"changed meanwhile {self.changed}, failed {self.failed}, remaining "
            f"{self.remaining}; active factors with recovery codes under old hashing keys: "
            f"{old or 'none'}"
        )


def _replacement(record: StoredRecord, keyring: Keyring) -> Replacement | None:
    bound = (record.user_id, record.totp_id)
    secret = keyring.reseal(record.secret, SECRET_PURPOSE, *bound)
    codes = digests = None
    if record.pending and record.sealed_recovery_codes is not None:
        sealed = record.sealed_recovery_codes
        codes = keyring.reseal(sealed, RECOVERY_CODES_PURPOSE, *bound)
        if record.recovery_key_id != keyring.hashing_key_id:
            plain = keyring.open(sealed, RECOVERY_CODES_PURPOSE, *bound).decode().split("\n")
            canonical = [recovery_codes.normalize(code) for code in plain]
            digests = (
                keyring.hashing_key_id,
                [keyring.digest(c, record.user_id) for c in canonical if c is not None],
            )
    if secret is None and codes is None and digests is None:
        return None
    return Replacement(secret, codes, digests)


async def rotate_keys(
    store: RotationStore,
    keyring: Keyring,
    *,
    batch_size: int = 100,
    cursor: int = 0,
    pause: float = 0.0,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Walk every enrollment once (from ``cursor``), re-sealing what needs it."""
    report = RotationReport()
    while True:
        cursor, records = await store.scan(cursor, batch_size)
        for record in records:
            report.scanned += 1
            if not record.pending and record.recovery_key_id != keyring.hashing_key_id:
                report.old_hashing_keys[record.recovery_key_id] += 1
            try:
                replacement = _replacement(record, keyring)
            except DecryptionError as exc:
                log.warning("cannot re-seal %s: %s", record.totp_id, exc)
                report.failed += 1
                continue
            if replacement is None:
                report.current += 1
            elif await store.replace(record, replacement):
                report.rotated += 1
            else:
                report.changed += 1
        report.cursor = cursor
        if progress:
            progress(report)
        if cursor == 0:
            return report
        if pause:
            await asyncio.sleep(pause)


def _redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    # A development server's embedded Redis (totpd.app.redis_url), if one is running.
    socket = (settings.data_dir / "redis" / "redis.sock").resolve()
    if socket.exists():
        return f"unix://{socket}"
    raise ConfigError("set TOTPD_REDIS_URL to the Redis the servers use")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="totpd rotate-keys",
        description="Re-encrypt every stored TOTP secret under the primary key of the "
        "keys file (TOTPD_* settings as for the server).",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="keys per SCAN step")
    parser.add_argument("--cursor", type=int, default=0, help="resume a walk at this cursor")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between batches")
    args = parser.parse_args(argv)
    if not 1 <= args.batch_size <= 10_000 or args.cursor < 0 or args.pause < 0:
        parser.error("--batch-size is 1 to 10000; --cursor and --pause are not negative")
    try:
        settings = Settings.from_env(os.environ)
        url = _redis_url(settings)
    except ConfigError as exc:
        print(f"totpd rotate-keys: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, stream=sys.stderr)
    try:
        keyring = Keyring.load(settings.resolved_keys_file)
    except KeyringError as exc:
        print(f"totpd rotate-keys: {exc}", file=sys.stderr)
        return 1

    def progress(report: RotationReport) -> None:
        log.info("cursor %d: %s", report.cursor, report.summary())

    async def run() -> RotationReport:
        client = connect(url, settings.redis_timeout)
        try:
            store = RotationStore(client, settings.key_prefix)
            return await rotate_keys(
                store,
                keyring,
                batch_size=args.batch_size,
                cursor=args.cursor,
                pause=args.pause,
                progress=progress,
            )
        finally:
            await client.aclose()

    try:
        report = asyncio.run(run())
    except StoreUnavailable as exc:
        print(
            f"totpd rotate-keys: {exc}; resume with --cursor from the last log line",
            file=sys.stderr,
        )
        return 1
    print(f"totpd rotate-keys: {report.summary()}")
    if report.failed:
        return 1
    return EXIT_RUN_AGAIN if report.changed else 0
