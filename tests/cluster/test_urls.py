"""The TOTPD_REDIS_URL forms (docs/reliability.md): what parses, what is refused."""

from __future__ import annotations

import pytest

from totpd.config import ConfigError, Settings
from totpd.errors import StoreUnavailable
from totpd.store.redis_store import connect
from totpd.store.topology import Topology, parse_redis_url


@pytest.mark.parametrize(
    "url",
    ["redis://h:6379/2", "rediss://u:p@h:6380/0?ssl_cert_reqs=required", "unix:///r.sock"],
)
def test_single_server_urls_pass_through(url: str) -> None:
    location = parse_redis_url(url)
    assert (location.topology, location.url) == (Topology.STANDALONE, url)


def test_cluster_url_lists_seed_nodes_and_credentials() -> None:
    location = parse_redis_url("rediss+cluster://totpd:s%40cret@a:7000,[::1]:7001?ssl_ca_certs=/ca")
    assert location.topology is Topology.CLUSTER and location.tls
    assert location.nodes == (("a", 7000), ("::1", 7001))
    assert (location.username, location.password) == ("totpd", "s@cret")
    assert location.query == "ssl_ca_certs=/ca"
    assert not parse_redis_url("redis+cluster://a:7000").tls


def test_sentinel_url_names_the_primary() -> None:
    location = parse_redis_url("redis+sentinel://:pw@s1:26379,s2:26379,s3:26379/totpd-primary")
    assert location.topology is Topology.SENTINEL
    assert location.nodes == (("s1", 26379), ("s2", 26379), ("s3", 26379))
    assert location.primary_name == "totpd-primary"
    assert (location.username, location.password) == (None, "pw")


@pytest.mark.parametrize(
    "url",
    [
        "http://h:1",
        "redis+cluster://h",  # no port
        "redis+cluster://h:1,",  # empty node
        "redis+cluster://h:1/0",  # a cluster has one database
        "redis+sentinel://s:26379",  # no primary name
        "redis+sentinel://s:26379/",
        "redis+sentinel://s:26379/a/b",
        "redis+sentinel://s:26379/p?x=1",
        "rediss+sentinel://s:26379/p",  # not supported
        "redis+cluster://h:70000",
    ],
)
def test_malformed_urls_are_refused_by_the_settings(url: str) -> None:
    with pytest.raises(ConfigError, match="TOTPD_REDIS_URL"):
        Settings.from_env({"TOTPD_REDIS_URL": url})


def test_settings_accept_topologies_and_replica_acks() -> None:
    settings = Settings.from_env(
        {"TOTPD_REDIS_URL": "redis+cluster://a:7000,b:7001", "TOTPD_REDIS_MIN_REPLICAS_ACK": "1"}
    )
    assert settings.redis_min_replicas_ack == 1
    assert Settings().redis_min_replicas_ack == 0
    with pytest.raises(ConfigError, match="TOTPD_REDIS_MIN_REPLICAS_ACK"):
        Settings.from_env({"TOTPD_REDIS_MIN_REPLICAS_ACK": "-1"})


def test_single_node_tools_refuse_a_cluster_url() -> None:
    # rotate-keys walks one node's keys: it runs per primary, with a redis:// URL.
    with pytest.raises(StoreUnavailable, match="once per primary"):
        connect("redis+cluster://127.0.0.1:7000")
