"""The clock: a training runs starting → processing → succeeded, and its new
version lands on the destination."""

from __future__ import annotations

import re
from typing import cast

import aiohttp

from service.simulator.faults import Faults, FaultSettings
from service.simulator.notifier import Notifier
from service.simulator.state import Store, Training
from service.simulator.submissions import read_submission
from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)
from service.simulator.training_runner import CLOCK_FAILED, TrainingRunner

from ..support.simulator import Simulator, wait_until
from .calls import IMAGES, create_training, get_json, wait_for_status


async def test_training_passes_through_processing_with_growing_logs(
    api: aiohttp.ClientSession, destination: str
) -> None:
    created = await create_training(api, destination)

    processing = await wait_for_status(api, created["id"], "processing")

    assert processing["started_at"] is not None
    assert processing["completed_at"] is None
    assert processing["logs"].startswith("Starting ostris/flux-dev-lora-trainer:")
    finished = await wait_for_status(api, created["id"])
    assert finished["logs"].startswith(processing["logs"])
    assert "1000/1000 steps" in finished["logs"]


async def test_training_succeeds_with_output_metrics_and_times(
    api: aiohttp.ClientSession, destination: str
) -> None:
    created = await create_training(api, destination)

    training = await wait_for_status(api, created["id"])

    assert training["status"] == "succeeded"
    assert training["error"] is None
    assert created["created_at"] <= training["started_at"] <= training["completed_at"]
    assert set(training["metrics"]) == {"predict_time", "total_time"}
    assert training["metrics"]["total_time"] >= training["metrics"]["predict_time"]
    version = training["output"]["version"]
    assert re.fullmatch(rf"{destination}:[0-9a-f]{{64}}", version)
    assert re.fullmatch(
        r"https://replicate\.delivery/.+/trained_model\.tar",
        training["output"]["weights"],
    )


async def test_succeeded_training_adds_the_destinations_newest_version(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    await simulator.push_version("local", "faces")
    created = await create_training(api, destination)

    training = await wait_for_status(api, created["id"])

    version_id = training["output"]["version"].split(":")[1]
    versions = await get_json(api, f"/v1/models/{destination}/versions")
    assert versions["results"][0]["id"] == version_id
    assert len(versions["results"]) == 2
    model = await get_json(api, f"/v1/models/{destination}")
    assert model["latest_version"] == versions["results"][0]
    schema = model["latest_version"]["openapi_schema"]["components"]["schemas"]
    assert "prompt" in schema["Input"]["properties"]


async def test_training_steps_input_drives_the_progress_logs(
    api: aiohttp.ClientSession, destination: str
) -> None:
    created = await create_training(
        api,
        destination,
        input={"input_images": "https://example.com/a.zip", "steps": 50},
    )

    training = await wait_for_status(api, created["id"])

    assert "Training for 50 steps" in training["logs"]
    assert "50/50 steps" in training["logs"]


async def test_training_into_a_model_deleted_meanwhile_fails(
    api: aiohttp.ClientSession, destination: str
) -> None:
    created = await create_training(api, destination)
    assert (await api.delete(f"/v1/models/{destination}")).status == 204

    training = await wait_for_status(api, created["id"])

    assert training["status"] == "failed"
    assert training["output"] is None
    assert "deleted" in training["error"]


async def test_trainer_run_count_grows_with_each_training(
    api: aiohttp.ClientSession, destination: str
) -> None:
    path = "/v1/models/ostris/flux-dev-lora-trainer"
    before = (await get_json(api, path))["run_count"]

    await create_training(api, destination)
    await create_training(api, destination)

    after = await wait_until(lambda: get_json(api, path))
    assert after["run_count"] == before + 2


class _FailingNotifier:
    """Stands in for the notifier and raises as the run writes its logs."""

    def notify(self, training: Training, event: str) -> None:
        if event == "logs":
            raise RuntimeError("notifier broke")


async def test_clock_that_breaks_ends_the_training_failed_not_hanging() -> None:
    store = Store("local")
    store.create_model("local", "faces", "private", "cpu")
    body = {"destination": "local/faces", "input": IMAGES}
    submission = read_submission(
        store, *FLUX_DEV_LORA_TRAINER.split("/"), FLUX_DEV_LORA_TRAINER_VERSION, body
    )
    runner = TrainingRunner(
        store, cast(Notifier, _FailingNotifier()), Faults(FaultSettings()), 0.05
    )

    training = runner.submit(submission, "api", "http://127.0.0.1")

    await wait_until(lambda: training.finished)
    assert training.status == "failed"
    assert training.error == CLOCK_FAILED
    await runner.close()
