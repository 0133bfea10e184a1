"""The spool's durability, proven rather than assumed.

- Order and replay-once over many batches, across reopenings.
- A full disk (a file size limit, RLIMIT_FSIZE, in a child process): the append that did not fit
  fails loudly and stores nothing; batches appended once space is back are stored and replayed
  after the earlier ones.
- Crashes: a child appends and replays (committing as it goes) and is SIGKILLed at a random
  moment; every batch it acknowledged is there after the crash, in order, none twice, with at
  most the one batch it was replaying when it died delivered again (the window the README names).
  5 rounds in ``make test``, 50 in ``make test-slow``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workers.spool import Spool, SpoolError

ROOT = Path(__file__).resolve().parent.parent


def drain(spool: Spool) -> list[list[object]]:
    """Replay everything, committing each batch."""
    seen = []
    while (item := spool.peek()) is not None:
        position, batch = item
        seen.append(batch)
        spool.commit(position, len(batch))
    return seen


def test_order_and_replay_once_across_reopenings(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    for i in range(2000):
        spool.append([("batch", i), ("second", i)])
    assert (spool.pending_batches, spool.pending_events) == (2000, 4000)
    first = [spool.peek() for _ in range(2)]
    assert first[0] == first[1]  # peeking does not consume
    for _ in range(500):
        position, batch = spool.peek()  # type: ignore[misc]
        spool.commit(position, len(batch))
    spool.close()
    reopened = Spool(tmp_path / "s")
    assert (reopened.pending_batches, reopened.pending_events) == (1500, 3000)
    seen = drain(reopened)
    assert [batch[0][1] for batch in seen] == list(range(500, 2000))
    reopened.close()
    assert Spool(tmp_path / "s").peek() is None


def test_an_append_is_on_disk_before_it_returns(tmp_path: Path) -> None:
    """WAL with synchronous=FULL: SQLite fsyncs each committed append (a SIGKILL test cannot
    see a missing fsync, so the setting itself is checked)."""
    spool = Spool(tmp_path / "s")
    assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    spool.close()


def test_a_second_owner_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path / "s")
    spool.close()
    Spool(tmp_path / "s").close()


FULL_DISK = textwrap.dedent(
    """
    import json, resource, signal, sys
    from workers.spool import Spool, SpoolError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    spool = Spool(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    acknowledged, failures = [], []
    for i in range(400):
        try:
            spool.append([("x" * 2000, i)])
            acknowledged.append(i)
        except SpoolError as exc:
            failures.append(str(exc))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is back
    for i in range(400, 420):
        spool.append([("x" * 2000, i)])
        acknowledged.append(i)
    print(json.dumps({"acknowledged": acknowledged, "failures": failures[:1],
                      "failed": len(failures)}))
    """
)


def test_full_disk_fails_the_append_and_recovers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["failed"] > 0, "the size limit never hit: the test proves nothing"
    assert "could not write 1 events to the spool" in report["failures"][0]
    spool = Spool(tmp_path / "s")
    stored = [batch[0][1] for batch in drain(spool)]
    assert stored == report["acknowledged"]  # everything acknowledged, in order, nothing else
    assert stored[-20:] == list(range(400, 420))  # appended after the disk had room again


CRASHER = textwrap.dedent(
    """
    import sys
    from workers.spool import Spool

    spool = Spool(sys.argv[1])
    log = open(sys.argv[2], "a", buffering=1)
    start = int(sys.argv[3])
    i = start
    while True:
        spool.append([("event", i)])
        log.write(f"ack {i}\\n")  # acknowledged only after append returned
        i += 1
        if i % 3 == 0:
            item = spool.peek()
            if item is not None:
                log.write(f"replaying {item[1][0][1]}\\n")
                spool.commit(item[0], 1)
                log.write(f"replayed {item[1][0][1]}\\n")
    """
)


def crash_rounds(tmp_path: Path, rounds: int) -> None:
    """Kill a writer/replayer ``rounds`` times; check the invariants after each crash."""
    directory, log = tmp_path / "s", tmp_path / "log"
    rng = random.Random(1234)
    next_value = 0
    for _ in range(rounds):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHER, str(directory), str(log), str(next_value)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        time.sleep(rng.uniform(0.3, 0.9))
        child.send_signal(signal.SIGKILL)
        child.wait()
        lines = log.read_text().splitlines()
        acknowledged = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
        replayed = [int(line.split()[1]) for line in lines if line.startswith("replayed ")]
        replaying = [int(line.split()[1]) for line in lines if line.startswith("replaying ")]
        spool = Spool(directory)
        left = [batch[0][1] for batch in spool.batches()]
        spool.close()
        # Every acknowledged batch is either replayed or still in the spool, in order; the
        # spool may also hold the one append the kill cut between its commit and its "ack".
        done = set(replayed)
        unreplayed = [value for value in acknowledged if value not in done]
        in_flight = set(replaying) - done  # at most the one the kill interrupted
        assert len(in_flight) <= 1
        kept = [v for v in left if v not in in_flight]
        expected = [v for v in unreplayed if v not in in_flight]
        context = f"left {left[-5:]}, acknowledged {acknowledged[-5:]}, in flight {in_flight}"
        assert kept[: len(expected)] == expected, context
        assert len(kept) - len(expected) <= 1, context
        with log.open("a") as out:  # settle this round for the next ones:
            out.writelines(f"ack {value}\n" for value in kept[len(expected) :])  # stored
            # a replay cut after its commit is done; one cut before it stays to be replayed
            out.writelines(f"replayed {value}\n" for value in in_flight if value not in left)
        # ...and nothing replayed is left to be replayed again.
        assert not set(left) & done
        next_value = max([*acknowledged, *left, next_value - 1]) + 1


def test_sigkill_while_writing_and_replaying_loses_nothing_acknowledged(tmp_path: Path) -> None:
    crash_rounds(tmp_path, 5)


@pytest.mark.slow
def test_sigkill_crash_loop_fifty_rounds(tmp_path: Path) -> None:
    crash_rounds(tmp_path, 50)


def test_a_rescue_adds_only_what_the_spool_does_not_hold(tmp_path: Path) -> None:
    """What the worker spooled in its last moments (after its last report) and the
    application then rescues from its resend buffer is stored once: the same seq and time.
    Past the deadline nothing more is stored, and the frames done say how far it got."""
    import time as clock

    from workers import snapshot, wire
    from workers.event import Event, Kind
    from workers.records import convert
    from workers.rescue import spool_frames
    from workers.wire import Op

    events = [
        Event(Kind.TEXT, seq, clock.time() + seq, None, None, (f"t{seq}",), {})
        for seq in range(1, 11)
    ]
    frames = [
        wire.frame(Op.EVENTS, 1, n, (5, snapshot.encode(events[start : start + 5])))
        for n, start in enumerate((0, 5), 1)
    ]
    worker = Spool(tmp_path / "jsonl")
    worker.append([convert(event).to_wire() for event in events[:4]])  # the worker got this far
    worker.close()
    late = spool_frames(frames, 1.0, tmp_path, [("jsonl", None)], 3, clock.monotonic() - 1)
    assert (late.frames_done, late.spooled) == (0, 0)
    rescued = spool_frames(frames, 1.0, tmp_path, [("jsonl", None)], 3, clock.monotonic() + 60)
    assert (rescued.frames_done, rescued.spooled, rescued.error) == (2, 6, None)
    spool = Spool(tmp_path / "jsonl")
    texts = [item[5]["text"] for batch in drain(spool) for item in batch]
    assert texts == [f"t{seq}" for seq in range(1, 11)]  # each once, in order
