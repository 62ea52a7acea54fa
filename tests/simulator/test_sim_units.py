"""Pure functions: parsers, PNG, config, CLI args, lifecycle arithmetic."""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import time
import zlib

import httpx
import pytest
from sim_helpers import AUTH

from genqueue.simulator.catalog import KNOWN_VERSIONS, resolve_version
from genqueue.simulator.cli_args import add_arguments, config_from_args
from genqueue.simulator.config import SimConfig
from genqueue.simulator.png import check_png, image_size, make_png
from genqueue.simulator.render import parse_rfc3339, rfc3339
from genqueue.simulator.routes_predictions import parse_cancel_after, parse_prefer_wait
from genqueue.simulator.store import US, Store


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("90", 90),
                                                ("2", 5), ("1m30s", 90), ("", None), ("soon", None)])
def test_cancel_after(text: str, seconds: float | None) -> None:
    assert parse_cancel_after(text, 5.0) == seconds


@pytest.mark.parametrize(("text", "wait"), [("wait", 60), ("wait=5", 5), ("wait=600", 60), ("wait=0", 1),
                                            ("respond-async", None), (None, None), ("foo, wait=3", 3)])
def test_prefer_wait(text: str | None, wait: int | None) -> None:
    assert parse_prefer_wait(text, 60) == wait


def test_timestamps_roundtrip() -> None:
    us = 1_751_051_846_199_123
    text = rfc3339(us)
    assert text == "2025-06-27T19:17:26.199123Z"
    assert parse_rfc3339(text) == us
    assert parse_rfc3339("2023-08-28T11:36:20.72056036Z") == parse_rfc3339("2023-08-28T11:36:20.720560Z")
    assert parse_rfc3339("2025-06-27T19:17:26.199Z") == 1_751_051_846_199_000


def test_png_valid_and_unique() -> None:
    a, b = make_png("p1/out-0", 64, 36), make_png("p2/out-0", 64, 36)
    assert a != b and a == make_png("p1/out-0", 64, 36)
    assert check_png(a) == (64, 36)
    broken = a[:-5] + bytes([a[-5] ^ 1]) + a[-4:]
    with pytest.raises(ValueError):
        check_png(broken)
    ihdr = a[8:33]
    assert struct.unpack(">I", ihdr[-4:])[0] == zlib.crc32(ihdr[4:-4])
    assert image_size("16:9") == (64, 36) and image_size("9:21") == (27, 64) and image_size(None) == (64, 64)
    assert image_size("1:1", 1920, 1080) == (64, 36)


def test_config_update_and_validation() -> None:
    cfg = SimConfig()
    cfg.update({"fault_5xx": 0.5, "seed": 1, "create_burst": 10, "tokens": ["a", "b"]})
    assert cfg.fault_5xx == 0.5 and cfg.seed == 1 and cfg.create_burst == 10.0 and cfg.tokens == {"a", "b"}
    with pytest.raises(ValueError):
        cfg.update({"fault_5xx": 1.5})
    assert cfg.fault_5xx == 0.5
    with pytest.raises(ValueError):
        cfg.update({"output_mode": "zip"})
    with pytest.raises(ValueError):
        SimConfig(fail_rate=-1)


def test_resolve_version() -> None:
    assert len(KNOWN_VERSIONS) == 4
    for vid, info in KNOWN_VERSIONS.items():
        assert resolve_version(vid, False) is info
        assert resolve_version(f"jigsawstack/image-generation:{vid}", False) is info
    assert resolve_version("f" * 64, False) is None
    generic = resolve_version("f" * 64, True)
    assert generic is not None and generic.fields is None
    assert resolve_version("x:y", True) is None and resolve_version(None, True) is None


def test_lifecycle_is_computed_from_the_clock() -> None:
    now = [1000.0]
    store = Store(SimConfig(start_delay=1, predict_seconds=2, seed=1), clock=lambda: now[0])
    version = next(iter(KNOWN_VERSIONS.values()))
    rec = store.create(version, {"prompt": "x", "api_key": "k"}, cancel_after=None)
    at = lambda s: rec.state(int(s * US)).status  # noqa: E731
    assert (at(1000.5), at(1001.5), at(1003.0)) == ("starting", "processing", "succeeded")
    aborted = store.create(version, {}, cancel_after=0.5)
    assert aborted.state(int(1002 * US)).status == "aborted"
    canceled = store.create(version, {}, cancel_after=2)
    assert canceled.state(int(1002.5 * US)).status == "canceled"
    now[0] = 1001.5
    store.cancel(rec)
    final = rec.state(int(2000 * US))
    assert final.status == "canceled" and final.completed_us == 1001_500_000


def test_cli_args_build_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(["--port", "9000", "--predict-seconds", "0.5", "--fault-5xx", "0.1",
                            "--accept-any-version", "--token", "r8_a", "--seed", "7"])
    cfg = config_from_args(ns)
    assert ns.port == 9000 and cfg.predict_seconds == 0.5 and cfg.fault_5xx == 0.1
    assert cfg.accept_any_version is True and cfg.tokens == {"r8_a"} and cfg.seed == 7
    assert cfg.start_delay == SimConfig().start_delay


def test_python_dash_m_simulator() -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "genqueue.simulator", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v1/webhooks/default/secret", headers=AUTH)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
