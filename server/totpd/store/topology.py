"""Which Redis deployment a ``TOTPD_REDIS_URL`` names (docs/reliability.md).

    redis://[user:password@]host:port[/db][?options]    one server (also rediss://, unix://)
    redis+cluster://[user:password@]host:port[,host:port...][?options]
                                                        Redis Cluster, from its seed nodes
    rediss+cluster://...                                the same over TLS
    redis+sentinel://[user:password@]host:port[,host:port...]/<primary name>
                                                        the primary that Sentinel names

Parsing only, no client: the settings check a URL with it before anything connects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import unquote


class Topology(enum.Enum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


_SCHEMES = {
    "redis": Topology.STANDALONE,
    "rediss": Topology.STANDALONE,
    "unix": Topology.STANDALONE,
    "redis+cluster": Topology.CLUSTER,
    "rediss+cluster": Topology.CLUSTER,
    "redis+sentinel": Topology.SENTINEL,
}


@dataclass(frozen=True)
class RedisLocation:
    """A parsed ``TOTPD_REDIS_URL``. For a standalone server only ``url`` matters."""

    topology: Topology
    url: str
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seed nodes or sentinels
    primary_name: str = ""  # sentinel: the monitored primary's name
    username: str | None = None
    password: str | None = None
    query: str = ""  # cluster: options for redis-py (e.g. ssl_ca_certs=...)


def _host_port(raw: str) -> tuple[str, int]:
    host, sep, port = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{raw!r} is not host:port")
    return host, int(port)


def parse_redis_url(raw: str) -> RedisLocation:
    """Raise ValueError (with a message fit for the operator) if ``raw`` is malformed."""
    scheme, sep, rest = raw.partition("://")
    topology = _SCHEMES.get(scheme.lower()) if sep else None
    if topology is None:
        raise ValueError(
            "must be a redis://, rediss://, unix://, redis+cluster://, rediss+cluster:// "
            "or redis+sentinel:// URL"
        )
    if topology is Topology.STANDALONE:
        return RedisLocation(topology, raw)
    rest, _, query = rest.partition("?")
    if topology is Topology.SENTINEL and query:
        raise ValueError("redis+sentinel:// takes no ?options")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_host_port(part) for part in hosts.split(","))
    if topology is Topology.CLUSTER:
        if path:
            raise ValueError("a cluster URL has no path (Redis Cluster has only database 0)")
        return RedisLocation(
            topology,
            raw,
            tls=scheme.lower() == "rediss+cluster",
            nodes=nodes,
            username=username,
            password=password,
            query=query,
        )
    name = unquote(path)
    if not slash or not name or "/" in name:
        raise ValueError("must name the primary: redis+sentinel://host:port,.../<primary name>")
    return RedisLocation(
        topology, raw, nodes=nodes, primary_name=name, username=username, password=password
    )
