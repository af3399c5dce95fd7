"""Write docs/BENCHMARKS.md and docs/benchmarks.png from bench/results/*.json.

Run after the benchmarks (make bench does both); every figure in the document
comes from the results files of that run, except the comparisons quoted under
"What was tried", which say which runs they come from.
"""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import ROOT

RESULTS = Path(__file__).parent / "results"
DOCUMENT = ROOT / "docs" / "BENCHMARKS.md"
PLOT = ROOT / "docs" / "benchmarks.png"


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    postgres = subprocess.run(
        ["psql", "--version"], capture_output=True, text=True
    ).stdout.strip()
    return f"{cores} cores, {platform.system()} {platform.release()}, {postgres}"


def plot(ingestion: dict, intake: dict) -> None:
    rounds = ingestion["rounds"]
    labels = [f"round {n}" for n in range(1, len(rounds) + 1)]
    figure, (rates, latencies) = plt.subplots(1, 2, figsize=(11, 4.8))

    x = range(len(rounds))
    width = 0.38
    rates.bar(
        [i - width / 2 for i in x],
        [r["floor"]["per_second"] for r in rounds],
        width,
        label="floor (reference_server.py)",
        color="#9aa5b1",
    )
    rates.bar(
        [i + width / 2 for i in x],
        [r["tuneyard"]["per_second"] for r in rounds],
        width,
        label="Tuneyard, full path",
        color="#2f6db3",
    )
    rates.axhline(
        intake["intake"]["per_second"],
        color="#c2571a",
        linestyle="--",
        label="Tuneyard intake (POST /v1/trainings)",
    )
    rates.set_xticks(list(x), labels)
    rates.set_ylabel("requests per second")
    rates.set_title("Webhook ingestion: throughput")
    # Below the axes: inside, it would hide the bars it explains.
    rates.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)

    median = ingestion["median"]
    groups = ["floor", "tuneyard"]
    p50 = [median[g]["p50_ms"] for g in groups] + [intake["intake"]["p50_ms"]]
    p99 = [median[g]["p99_ms"] for g in groups] + [intake["intake"]["p99_ms"]]
    names = ["floor", "Tuneyard\nwebhooks", "Tuneyard\nintake"]
    y = range(len(names))
    latencies.bar([i - width / 2 for i in y], p50, width, label="p50", color="#7fb069")
    latencies.bar([i + width / 2 for i in y], p99, width, label="p99", color="#d1495b")
    latencies.set_xticks(list(y), names)
    latencies.set_ylabel("milliseconds")
    latencies.set_title(f"Latency, {ingestion['connections']} connections")
    latencies.legend(
        fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2
    )

    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def _same_cost(versions: dict) -> str:
    ratios = (versions["ratio_p50"], versions["ratio_p50_deep"])
    if all(0.8 <= r <= 1.25 for r in ratios):
        return "the same cost"
    if all(0.5 <= r <= 2.0 for r in ratios):
        return (
            "the same cost within this run's noise, which is wide at a few"
            " milliseconds a request"
        )
    return "a difference beyond noise, to investigate"


def _server_busy(ingestion: dict, name: str) -> float:
    """The share of one core the server process used during its wrk run."""
    return ingestion["median"][name]["server_cpu_s"] / ingestion["seconds"]


def _cpu_rows(ingestion: dict) -> str:
    rows = []
    for name, label in (("floor", "floor"), ("tuneyard", "Tuneyard")):
        run = ingestion["median"][name]
        rows.append(
            f"| {label} | {run['server_us_per_webhook']} µs "
            f"| {run['database_us_per_webhook']} µs "
            f"| {_server_busy(ingestion, name):.0%} |"
        )
    return "\n".join(rows)


def _verdict(ingestion: dict) -> str:
    """What the CPU figures say about the ratio against the 1.0x target."""
    median = ingestion["median"]
    floor, tuneyard = median["floor"], median["tuneyard"]
    ours_db, floor_db = (
        tuneyard["database_us_per_webhook"],
        floor["database_us_per_webhook"],
    )
    if ours_db <= floor_db * 1.15:
        database = (
            f"Per webhook, PostgreSQL works no harder for Tuneyard than for the"
            f" floor ({ours_db} µs against {floor_db} µs), although Tuneyard"
            " writes an event, a training update, a version and a callback row"
            " where the floor writes one row: group commit pays for the extra rows."
        )
    else:
        database = (
            f"Per webhook, PostgreSQL works {ours_db / floor_db:.1f} times as hard"
            f" for Tuneyard as for the floor ({ours_db} µs against {floor_db} µs):"
            " an event, a training update, a version and a callback row cost more"
            " than group commit saves."
        )
    server = (
        f"Tuneyard's one event loop spends {tuneyard['server_us_per_webhook']} µs"
        f" of CPU per webhook, the floor's {floor['server_us_per_webhook']} µs;"
        f" Tuneyard's ran at {_server_busy(ingestion, 'tuneyard'):.0%} of a core."
    )
    ratio = median["ratio"]
    return (
        f"**Against the target of 1.0x.** {'Met' if ratio >= 1.0 else 'Not met'}"
        f" in the median round ({ratio:.2f}x). {database} {server}"
    )


# Measured by hand with bench/compare.py, not by `make bench`: each pair below
# comes from one such run, so it is written out here rather than computed.
TRIED = """\
What was tried, and what is left. The ratios quoted here are not from this
run: each pair comes from one run of `bench/compare.py` on 2026-12-04, which
puts two versions beside the floor in the same rounds (medians of five rounds
shown). That is the only way to tell two versions apart on this machine: the
floor alone moved by up to a third between rounds of one run, and two runs of
the same code in one round by up to a fifth, so the figure to trust is how two
versions compare round by round.

- **Kept.**
  - Each writer takes half of what waits for it, counting the batch just
    written, rather than everything queued. Waiting requests form two groups
    that take turns; taking everything let them drift to batches of 25 and 7,
    and while the big one was written the loop had only the small group's work
    to do. Held even (16 and 16), the loop idles half as long: 1.08x against
    1.02x, better in all five rounds, the worst round 1.02x against 0.87x.
  - A committed batch's answers are given once the next batch's read has
    returned, 5 ms at most. Each answer wakes its request to write its
    response; given at once, that work ran in front of the next read's reply,
    with the database idle, and the loop then idled through the write. Now the
    responses are written while the next batch is being written: 1.06x against
    0.91x, better in every round, by 4% to 23%.
  - Training records made without a frozen dataclass's per-field setattr: the
    writer alone (no HTTP) went from 51-57 to 48-53 µs of Python a webhook.
  - Answered webhooks leave the deadline watch at its next check, not at their
    deadline: it had kept seconds' worth of outcomes alive. Peak RSS went from
    97 MB to 65 MB, with no change in webhooks a second.
  - From earlier work: signatures checked and bodies parsed in the ingestor's
    batches, callback snapshots serialised from plain data, one writer, a
    garbage collector kept off start-up's objects, one middleware in place of
    three, and the event hub listening only while a stream is open.
- **Measured and not kept.** Each cost more event-loop CPU a webhook than it
  saved in waiting:
  - reading the next batch ahead while the last is written, on a second
    connection (1.02x against 1.04x);
  - keeping the writer's connection between batches (0.99x against 1.04x);
  - giving held answers one a loop turn, or half before the next read (0.90x
    against 1.03x, 0.85x against 0.98x): interleaved, each piece of work runs
    slower;
  - checking signatures while the next batch's read is in flight (0.84x
    against 1.01x);
  - two writers (0.84x against 1.08x);
  - letting arrivals gather for one more loop turn before they are checked
    (1.01x against 1.02x);
  - uvloop (1.02x against 1.01x), and Python 3.13 for both servers (no change);
  - the whole write as one JSON document in place of 39 array parameters: the
    writer alone spent as much Python a webhook either way (49-55 µs).
  - On the database's side: without the foreign keys of the events and the
    outbox, with `json` in place of `jsonb` for their bodies, and with no
    compression below 8 kB, PostgreSQL spent a fifth less CPU a webhook, but
    no more webhooks were answered (0.99x against 0.98x, each version on a
    database its own migrations made). Asynchronous commit, tried only to find
    the bottleneck, changed nothing either.
  - Reading and applying the next batch on the same connection while the
    last one's write is in flight, over a copy of what that write changes
    (0.86x against 0.95x): the database round trip it hid (about 120 µs on
    this machine, even for `SELECT 1`) cost less than the bookkeeping.
  - With even batches, giving answers at once again (5,140 against 5,900
    webhooks/s, from a single run rather than a compare.py pair), and capping
    batches at 8 or 11 webhooks (fewer webhooks a second: more commits).
  - Drawing ids' and request ids' random bytes from a pool rather than a
    system call each (1.09x against 1.08x, CPU a webhook within noise).
  - Earlier: a pipelined writer, yielding before taking a batch, a read
    written as a UNION, two writers of other kinds, and one round trip a batch.
- **Where the time goes.** With its writer replaced by an immediate answer,
  the same process answers about 12,400 webhooks/s at 80 µs of CPU each
  (2.3x the floor): HTTP, the middleware and the signature checks. The writer
  adds about 70 µs a webhook: the read, applying the reports, and encoding and
  decoding the write, with two round trips a batch. A trace of the event loop
  found it idle about a tenth of the time, waiting on a batch's read or write;
  the process's share of a core in the table above is lower, as it also waits
  for the core itself, shared with PostgreSQL and wrk.
- **Left.** The writer's 70 µs, spread thin: each round trip costs about
  70 µs of Python, a callback snapshot about 8 µs, and the rest is many small
  steps of applying a report, none over a few microseconds. Several processes
  per replica would use the spare CPU, but would no longer compare like with
  like against a one-process floor."""


def document(ingestion: dict, intake: dict, submission: dict, versions: dict) -> str:
    median = ingestion["median"]
    floor, tuneyard = median["floor"], median["tuneyard"]
    cases = versions["cases"]
    rounds = "\n".join(
        f"| {n} | {r['floor']['per_second']:.0f} | {r['tuneyard']['per_second']:.0f} "
        f"| {r['ratio']:.2f}x |"
        for n, r in enumerate(ingestion["rounds"], 1)
    )
    i = intake["intake"]
    s = submission
    twice = s["created_on_replicate"] - s["distinct_replicate_ids"]
    large, small = cases["large/first"], cases["small/first"]
    summary = "\n".join(
        f"| {name} | {ours} | {theirs} | {ratio} |"
        for name, ours, theirs, ratio in [
            (
                "ingestion",
                f"{tuneyard['per_second']:.0f} webhooks/s, p50 "
                f"{tuneyard['p50_ms']:.1f} ms, p99 {tuneyard['p99_ms']:.1f} ms",
                f"floor {floor['per_second']:.0f} webhooks/s, p50 "
                f"{floor['p50_ms']:.1f} ms, p99 {floor['p99_ms']:.1f} ms",
                f"{median['ratio']:.2f}x",
            ),
            (
                "intake",
                f"{i['per_second']:.0f} trainings/s, p50 {i['p50_ms']:.1f} ms, "
                f"p99 {i['p99_ms']:.1f} ms, {i['non_2xx']} refused",
                f"floor {intake['floor']['per_second']:.0f} webhooks/s in the same run",
                f"{intake['ratio']:.2f}x",
            ),
            (
                "submission",
                f"{s['created_on_replicate']} of {s['trainings']} created, "
                f"{s['sustained_per_minute']:.0f}/min sustained, "
                f"{s['answered_429']} answered 429 ({s['share_429']:.1%}), "
                f"{twice} created twice",
                f"Replicate's limit, {s['create_limit_per_minute']}/min",
                f"{s['share_of_limit']:.2f}x",
            ),
            (
                "versions page",
                f"page of 50 at {large['versions']:,} versions: "
                f"p50 {large['p50_ms']:.2f} ms",
                f"at {small['versions']:,} versions: p50 {small['p50_ms']:.2f} ms",
                f"{versions['ratio_p50']:.2f}x",
            ),
            (
                "memory",
                f"peak RSS {tuneyard['peak_rss_mb']:.0f} MB under the ingestion load",
                "",
                "",
            ),
        ]
    )
    return (
        f"""# Benchmarks

Figures from `make bench`, run on {datetime.now(UTC):%Y-%m-%d}.
Machine: {machine()}.

None of them is a timed test. On a shared
machine absolute figures move from run to run; each ratio compares two
measurements of the same run, on the same database, and is the figure to read.

## Summary

| benchmark | Tuneyard | reference | ratio |
|---|---|---|---:|
{summary}

![Throughput and latency](benchmarks.png)

## Webhook ingestion

`bench/ingestion.py` puts Tuneyard's whole webhook path beside the floor,
`../shared/bench/reference_server.py`. The floor verifies the signature, inserts
the event keyed by webhook-id and answers 204, one commit a request. Tuneyard
verifies, deduplicates, moves the training's status, records the version on
success and writes the caller's callback event to the outbox, and answers once
all of it is committed.

- **Setup.** Both run on the same database with the same signed webhooks
  (`make_webhooks.py`), replayed by `wrk -t1 -c{ingestion["connections"]}
  -d{ingestion["seconds"]}s`. {len(ingestion["rounds"])} rounds; each starts from a
  checkpoint, and who runs first alternates.
- **The work.** Every training the webhooks name is seeded, with a callback
  URL; Tuneyard's median round reached about {tuneyard["requests"] // 3:,} of
  them. The webhook file is ordered so that each training gets its starting,
  processing and succeeded webhooks in turn. So a third of the webhooks record
  a version, and two thirds move a status and write a callback event:
  {tuneyard["versions"]} versions and {tuneyard["outbox"]} outbox rows in the
  median round.

| round | floor webhooks/s | Tuneyard webhooks/s | ratio |
|---|---:|---:|---:|
{rounds}

How Tuneyard gets there:

- **Batches all the way.** A webhook request only reads its body. The
  ingestor checks the signatures and parses the bodies of all the webhooks
  that arrived together in one loop, then hands the reports to the writer.
  Under load, checking and parsing cost about 40 µs a webhook when each
  request did its own, between other requests' code, and 11 µs in a loop.
- **Group commit.** Concurrent webhooks share a transaction. Each request
  waits until its batch has committed, so nothing is acknowledged before it is
  durable.
- **Answers after the next read.** When the next batch is already waiting,
  its read goes to the database before the committed batch's answers are
  given, so the answers' work overlaps the next write instead of delaying it.
- **Even batches.** A writer takes half of what waits for it, counting the
  batch it has just written, so the two groups of requests that take turns
  stay the same size and each write overlaps as much other work as the next.
- **Two round trips a batch.** The writer reads the batch's trainings without
  locks and writes everything in one statement, which refuses as a whole if a
  training changed in between. The batch is then applied again.
  `service/store/transitions.py` explains the rules. With more writers
  (`TUNEYARD_WEBHOOK_WRITERS`), a webhook goes to the writer its training
  hashes to, so writers never wait on each other's rows.

Where the CPU went, in the median round (microseconds of CPU per answered
webhook, read from /proc for the server process and for the PostgreSQL server
processes serving the benchmark's database):

| | server process | PostgreSQL | server share of its core |
|---|---:|---:|---:|
{_cpu_rows(ingestion)}

{_verdict(ingestion)}

{TRIED}

## Intake

`bench/intake.py` makes {intake["seconds"]} s of `POST /v1/trainings` with a
caller's token, from {intake["connections"]} connections, with the workers off.
Each accepted training is committed before its 202, together with its
destination row and the NOTIFY that wakes the submitters. wrk counted
{i["requests"]} answered requests, {i["non_2xx"]} of them refused; the database
kept {i["kept"]} trainings, which includes those still in flight when wrk
stopped.

## Submission

`bench/submission.py` queues {submission["trainings"]} trainings in one
destination and starts Tuneyard against a simulator process. The simulator
enforces Replicate's creation limit of {submission["create_limit_per_minute"]}
a minute, with a ten-second burst. Tuneyard's client-side limit is set to
{submission["client_limit_per_minute"]} a minute.

**Results.** {submission["created_on_replicate"]} of {submission["trainings"]}
reached the simulator in {submission["seconds"]} s. The sustained rate, past the
simulator's burst, was
{submission["sustained_per_minute"]:.0f} a minute: {submission["share_of_limit"]:.0%}
of the limit. Of {submission["create_requests"]} create requests,
{submission["answered_429"]} were answered 429. {twice} were created twice:
{submission["distinct_replicate_ids"]} distinct Replicate ids for
{submission["created_on_replicate"]} created trainings.

The client-side limit is per process. With several replicas, give each the
account's limit divided by the number of replicas (see docs/DEPLOY.md).

## Versions: a page of 50 at 1,000 and at 1,000,000 versions

`bench/versions_page.py` seeds one destination with 1,000 versions and another
with 1,000,000. It times `GET .../versions?limit=50`
{versions["requests"]} times each, for the first page and for a page ten `next`
links deep, taking the four pages in turn so that the machine's other work falls
on all of them alike.

| case | versions | p50 ms | p99 ms |
|---|---:|---:|---:|
"""
        + "\n".join(
            f"| {case} | {figures['versions']:,} | {figures['p50_ms']:.2f} | "
            f"{figures['p99_ms']:.2f} |"
            for case, figures in cases.items()
        )
        + f"""

The ratio of large to small, at p50, is {versions["ratio_p50"]:.2f}x for the first
page and {versions["ratio_p50_deep"]:.2f}x for the deep one: {_same_cost(versions)}. The
page is one scan of `versions_newest_first`, with the cursor as an index
condition, so it reads 51 index entries however many versions come before it:

```
{versions["plan_large"]}
```

## Memory

The Tuneyard process under the ingestion load peaked at
{tuneyard["peak_rss_mb"]:.0f} MB resident (Linux's `VmHWM`, read at the end of the
median round).

## Reproducing

```sh
make bench      # installs wrk if needed, runs every benchmark, writes this page
```

This needs the machine's PostgreSQL on 127.0.0.1:5432 (or `BENCH_DATABASE_URL`)
and the floor's references in `../shared/bench` (or `FLOOR_DIR`). Each benchmark
can be run alone: `.venv/bin/python bench/ingestion.py --rounds 5`,
`bench/intake.py`, `bench/submission.py` and `bench/versions_page.py`. Each
writes its figures to `bench/results/`, and `bench/report.py` turns those into
this page. To compare two settings, such as `TUNEYARD_WEBHOOK_WRITERS`, run
`.venv/bin/python bench/compare.py "NAME=1" "NAME=2"`: the floor and both in
every round. To compare a change with the commit before it, check that commit
out beside this one (`git worktree add /tmp/before HEAD~1`) and name it as one
side: `.venv/bin/python bench/compare.py "tree=/tmp/before" ""`.
"""
    )


def main() -> None:
    ingestion, intake = load("ingestion"), load("intake")
    plot(ingestion, intake)
    DOCUMENT.write_text(
        document(ingestion, intake, load("submission"), load("versions"))
    )
    print(f"wrote {DOCUMENT.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
