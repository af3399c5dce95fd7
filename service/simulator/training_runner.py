"""The clock: each training runs starting → processing → a terminal status.

A run takes about `training_seconds`: a tenth starting, most of it processing
while progress lines are appended to the logs, then the weights are written
(`output.weights`, the `output` event) and the trained version is pushed to the
destination. The faults decided at creation can make a run hang in processing
or fail after a successful-looking run, with Replicate's message for that.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Literal

from ..logs import get_logger
from . import ids
from .errors import DestinationNotFound
from .faults import Faults
from .notifier import Notifier
from .state import Source, Store, Training
from .submissions import Submission

FAILED_AFTER_RUN = (
    "Training failed. Failed to create trained image after successful training run."
)
DESTINATION_GONE = "The destination model was deleted before the training finished."
CLOCK_FAILED = "The simulator's training clock failed; see its log."
PROGRESS_TICKS = 10

Ending = Literal["succeeded", "failed", "canceled"]

log = get_logger()


def weights_url() -> str:
    """Where Replicate would serve the trained weights (not reachable here)."""
    return f"https://replicate.delivery/xezq/{secrets.token_hex(16)}/trained_model.tar"


class TrainingRunner:
    def __init__(
        self, store: Store, notifier: Notifier, faults: Faults, seconds: float
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._faults = faults
        self._seconds = seconds
        self._runs: dict[str, asyncio.Task[None]] = {}

    def submit(self, submission: Submission, source: Source, api_base: str) -> Training:
        """Record a training and start its clock; the `start` webhook goes out."""
        training = Training(
            id=ids.training_id(),
            key=self._store.next_key(),
            trainer=submission.trainer,
            destination=submission.destination,
            input=submission.input,
            effective_input=submission.effective_input,
            source=source,
            api_base=api_base,
            created_at=ids.utcnow(),
            fate=self._faults.training_fate(),
            webhook=submission.webhook,
            webhook_events_filter=submission.webhook_events_filter,
        )
        self._store.add_training(training)
        self._runs[training.id] = asyncio.create_task(self._run(training))
        self._notifier.notify(training, "start")
        return training

    def cancel(self, training: Training) -> None:
        """Cancel a training; one already finished stays as it is, as on Replicate."""
        if not training.finished:
            self.end(training, "canceled")

    def end(self, training: Training, status: Ending) -> None:
        """Finish a training now with `status`, whatever its clock was doing."""
        run = self._runs.pop(training.id, None)
        if run is not None and run is not asyncio.current_task():
            run.cancel()
        if status == "succeeded":
            self._succeed(training)
        elif status == "failed":
            self._finish(training, "failed", FAILED_AFTER_RUN)
        else:
            self._finish(training, "canceled")

    async def close(self) -> None:
        """Stop every clock; the trainings stay as they are."""
        runs = list(self._runs.values())
        self._runs.clear()
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    async def _run(self, training: Training) -> None:
        try:
            await self._advance(training)
        except Exception:
            # A bug here must not leave the training processing forever, nor
            # pass unnoticed as an unretrieved task exception.
            log.exception("training_clock_failed", training_id=training.id)
            if not training.finished:
                self._runs.pop(training.id, None)
                self._finish(training, "failed", CLOCK_FAILED)

    async def _advance(self, training: Training) -> None:
        step = self._seconds / 10
        await asyncio.sleep(step)
        self._start(training)

        steps = _steps(training)
        for tick in range(1, PROGRESS_TICKS + 1):
            await asyncio.sleep(step * 0.7)
            done = steps * tick // PROGRESS_TICKS
            training.log(_progress_line(done, steps))
            self._notifier.notify(training, "logs")

        if training.fate.hangs:
            training.log("Waiting for the trainer to report back...")
            self._notifier.notify(training, "logs")
            # Until a cancel or the admin API's finish ends the run.
            await asyncio.Event().wait()

        if training.fate.fails:
            training.log("Training finished; creating the trained image...")
            self._notifier.notify(training, "logs")
            await asyncio.sleep(step)
            self.end(training, "failed")
            return

        training.log("Training finished; weights written to trained_model.tar")
        training.output = {"weights": weights_url()}
        self._notifier.notify(training, "output")
        await asyncio.sleep(step)
        self.end(training, "succeeded")

    def _start(self, training: Training) -> None:
        training.status = "processing"
        training.started_at = ids.utcnow()
        trainer = training.trainer
        training.log(f"Starting {trainer.full_name}:{trainer.version_id}")
        training.log(f"Training for {_steps(training)} steps")
        self._notifier.notify(training, "logs")

    def _succeed(self, training: Training) -> None:
        weights = (training.output or {}).get("weights") or weights_url()
        try:
            destination = self._store.destination(training.destination)
        except DestinationNotFound:
            self._finish(training, "failed", DESTINATION_GONE)
            return
        version = self._store.add_version(
            destination, training.trainer.trained_schema()
        )
        training.output = {
            "version": f"{destination.full_name}:{version.id}",
            "weights": weights,
        }
        self._finish(training, "succeeded")

    def _finish(
        self, training: Training, status: Ending, error: str | None = None
    ) -> None:
        if status != "succeeded":
            training.output = None
        training.status = status
        training.error = error
        training.completed_at = ids.utcnow()
        training.metrics = _metrics(training)
        self._notifier.notify(training, "completed")


def _steps(training: Training) -> int:
    value = training.effective_input.get(training.trainer.steps_input)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return 1000


def _progress_line(done: int, steps: int) -> str:
    percent = 100 * done // steps
    bar = "#" * (percent // 10)
    return f"{percent:3d}%|{bar:<10}| {done}/{steps} steps"


def _metrics(training: Training) -> dict[str, float]:
    assert training.completed_at is not None
    total = (training.completed_at - training.created_at).total_seconds()
    if training.started_at is None:
        return {"total_time": round(total, 6)}
    predict = (training.completed_at - training.started_at).total_seconds()
    return {"predict_time": round(predict, 6), "total_time": round(total, 6)}
