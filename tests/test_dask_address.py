"""A Dask scheduler address that cannot be one is refused at once (exit 2), naming the
address and the form wanted, before rlmake plans, locks or connects to anything."""

from __future__ import annotations

import pytest

from conftest import run_cli, write_project
from rlmake.errors import UsageError
from rlmake.executors import ExecutorSettings, check_scheduler_address

SOURCES_ONLY = """
rules:
  all:
    deps: [in.txt]
"""

BAD = ["garbage", "http://127.0.0.1:1", "https://127.0.0.1:8787", "foo://x:1", "", "tcp://host",
       "tcp://:8786", "tcp://host:0", "tcp://host:99999", "tcp://host:8786/path", "host:port"]
GOOD = ["tcp://127.0.0.1:8786", "tls://scheduler.example.org:8786", "tcp://[::1]:8786",
        "scheduler:8786", "ws://10.0.0.1:8786"]


@pytest.mark.parametrize("address", BAD)
def test_a_bad_address_is_refused(address):
    with pytest.raises(UsageError) as caught:
        check_scheduler_address(address)
    assert f"'{address}'" in str(caught.value)
    assert "tcp://HOST:PORT" in str(caught.value)


@pytest.mark.parametrize("address", GOOD)
def test_a_good_address_passes(address):
    check_scheduler_address(address)
    assert ExecutorSettings("dask", address).scheduler == address


def test_a_local_build_ignores_the_scheduler_setting():
    assert ExecutorSettings("local", "garbage").kind == "local"


@pytest.mark.parametrize("address", ["garbage", "http://127.0.0.1:1", "foo://x:1", ""])
def test_the_cli_refuses_before_anything_runs(tmp_path, address):
    root = write_project(tmp_path / "proj", SOURCES_ONLY, {"in.txt": "in\n"})
    result = run_cli(["build", "--executor", "dask", "--scheduler", address], cwd=root)
    assert result.exit_code == 2, result.describe()
    assert f"bad Dask scheduler address '{address}'" in result.stderr, result.describe()
    assert "tcp://HOST:PORT" in result.stderr
    assert not (root / ".rlmake").exists()      # refused before the lock or the plan cache


def test_the_cli_refuses_an_empty_scheduler_instead_of_starting_a_local_cluster(tmp_path):
    root = write_project(tmp_path / "proj", SOURCES_ONLY, {"in.txt": "in\n",
                                                            "rlmake.toml": "[build]\n"
                                                            "scheduler = \"tcp://h:8786\"\n"})
    result = run_cli(["build", "-n", "--executor", "dask", "--scheduler", ""], cwd=root)
    assert result.exit_code == 2, result.describe()
    assert "bad Dask scheduler address ''" in result.stderr
