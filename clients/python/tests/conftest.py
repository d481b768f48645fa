"""The Python client's tests run against a real ``python -m totpd`` process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import TotpdProcess


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = TotpdProcess(tmp_path_factory.mktemp("python-client-server"))
    yield server.start()
    assert server.stop() == 0, server.log
