"""The official replicate client (1.0.7) drives the simulator unchanged."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
import replicate
from replicate.exceptions import ReplicateError
from replicate.helpers import FileOutput
from sim_helpers import GOOD_INPUT, REF, TOKEN, VERSION, MakeSim

from genqueue.simulator.png import check_png
from genqueue.simulator.server import SimHandle


@pytest.fixture
def rc(sim: SimHandle, monkeypatch: pytest.MonkeyPatch) -> replicate.Client:
    monkeypatch.setenv("REPLICATE_POLL_INTERVAL", "0.05")
    return replicate.Client(api_token=TOKEN, base_url=sim.base_url)


def test_create_reload_wait(rc: replicate.Client) -> None:
    pred = rc.predictions.create(version=VERSION, input=GOOD_INPUT)
    assert pred.status == "starting"
    assert len(pred.id) == 26 and pred.id.isalnum() and pred.id.islower()
    assert pred.model == "jigsawstack/image-generation"
    pred.wait()
    assert pred.status == "succeeded"
    assert isinstance(pred.output, str) and pred.output.endswith("/out-0.png")
    png = httpx.get(pred.output).content
    assert check_png(png) == (64, 36)
    pred.reload()
    assert pred.status == "succeeded"
    assert pred.completed_at is not None and pred.started_at is not None and pred.created_at is not None
    created, started, completed = (datetime.fromisoformat(t) for t in
                                   (pred.created_at, pred.started_at, pred.completed_at))
    assert pred.metrics is not None
    assert pred.metrics["predict_time"] == pytest.approx((completed - started).total_seconds(), abs=1e-6)
    assert pred.metrics["total_time"] == pytest.approx((completed - created).total_seconds(), abs=1e-6)


def test_create_with_owner_name_version(rc: replicate.Client) -> None:
    pred = rc.predictions.create(version=REF, input=GOOD_INPUT)
    assert pred.version == VERSION


def test_cancel(rc: replicate.Client) -> None:
    pred = rc.predictions.create(version=VERSION, input=GOOD_INPUT)
    pred.cancel()
    pred.reload()
    assert pred.status == "canceled"
    assert pred.completed_at is not None and pred.metrics is not None
    again = rc.predictions.cancel(pred.id)
    assert again.status == "canceled" and again.completed_at == pred.completed_at


def test_cancel_running(make_sim: MakeSim) -> None:
    sim = make_sim(start_delay=0.0, predict_seconds=5.0)
    rc = replicate.Client(api_token=TOKEN, base_url=sim.base_url)
    pred = rc.predictions.create(version=VERSION, input=GOOD_INPUT)
    time.sleep(0.05)
    pred.reload()
    assert pred.status == "processing" and pred.started_at is not None
    canceled = rc.predictions.cancel(pred.id)
    assert canceled.status == "canceled"
    assert canceled.metrics is not None and 0 < canceled.metrics["predict_time"] < 5


def test_list_pagination(rc: replicate.Client) -> None:
    ids = [rc.predictions.create(version=VERSION, input={**GOOD_INPUT, "seed": i}).id for i in range(105)]
    page = rc.predictions.list()
    assert len(page.results) == 100 and page.next is not None and page.previous is None
    assert [p.id for p in page.results] == list(reversed(ids))[:100]
    page2 = rc.predictions.list(page.next)
    assert [p.id for p in page2.results] == list(reversed(ids))[100:]
    assert page2.next is None and page2.previous is not None
    back = rc.predictions.list(page2.previous)
    assert [p.id for p in back.results] == [p.id for p in page.results]
    everything = [p.id for pg in replicate.paginate(rc.predictions.list) for p in pg]
    assert everything == list(reversed(ids))


def test_run_returns_output(rc: replicate.Client, sim: SimHandle) -> None:
    output = rc.run(REF, input=GOOD_INPUT)
    assert isinstance(output, str) and output.startswith(sim.base_url + "/files/")
    assert check_png(httpx.get(output).content) == (64, 36)


def test_run_data_uri_becomes_file_output(make_sim: MakeSim) -> None:
    sim = make_sim(output_mode="data_uri")
    rc = replicate.Client(api_token=TOKEN, base_url=sim.base_url)
    output = rc.run(REF, input=GOOD_INPUT)
    assert isinstance(output, FileOutput)
    assert check_png(output.read()) == (64, 36)


def test_model_and_deployment_endpoints(rc: replicate.Client) -> None:
    pred = rc.models.predictions.create(model="jigsawstack/image-generation", input=GOOD_INPUT)
    assert pred.version == VERSION
    dep = rc.deployments.predictions.create("acme/my-images", input=GOOD_INPUT)
    assert dep.model == "jigsawstack/image-generation"


def test_client_sees_errors(rc: replicate.Client) -> None:
    with pytest.raises(ReplicateError) as err:
        rc.predictions.create(version=VERSION, input={"api_key": "k"})
    assert err.value.status == 422 and err.value.title == "Input validation failed"
    bad = replicate.Client(api_token="r8_wrong", base_url=rc._base_url)
    with pytest.raises(ReplicateError) as err2:
        bad.predictions.get("x" * 26)
    assert err2.value.status == 401
