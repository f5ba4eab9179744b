"""Frame recordings: round trip, torn-tail repair, day split, signatures never written."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.io import frames
from engine.io.frames import K_IN, K_OUT, K_RUN, FrameRecorder, iter_records, repair

DAY_NS = frames.NS_PER_DAY
T0 = 1_780_000_000 * 1_000_000_000  # 2026-05-28


def test_round_trip_keeps_batches_and_order(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, anchor_ns=T0)
    rec.inbound(['{"channel":"bbo","data":1}', '{"channel":"bbo","data":2}'])
    rec.inbound(['{"channel":"pong"}'])
    rec.info({"type": "meta", "dex": "xyz"}, {"universe": []})
    rec.close()
    got = list(iter_records(tmp_path))
    assert [r.kind for r in got] == [K_RUN, K_IN, K_IN, K_IN, "info"]
    assert got[1].batch == got[2].batch != got[3].batch
    assert got[1].payload == b'{"channel":"bbo","data":1}'
    assert all(r.wall_ns - r.mono_ns == T0 for r in got)
    assert msgspec.json.decode(got[4].payload)["request"]["type"] == "meta"


def test_outbound_signatures_are_never_written(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, anchor_ns=T0)
    post = ('{"method":"post","id":7,"request":{"type":"action","payload":{"action":'
            '{"type":"order"},"nonce":5,"signature":{"r":"0xdeadbeef","s":"0xfeed","v":27}}}}')
    rec.outbound([post])
    rec.close()
    raw = b"".join(r.payload for r in iter_records(tmp_path) if r.kind == K_OUT)
    assert b"deadbeef" not in raw and b"signature" not in raw
    assert msgspec.json.decode(raw)["request"]["payload"]["nonce"] == 5
    for p in tmp_path.iterdir():  # nor anywhere in the compressed file
        assert b"deadbeef" not in frames._scan(p.read_bytes())[0][0]


def test_records_go_to_the_day_of_their_wall_time(tmp_path: Path) -> None:
    day_end = (T0 // DAY_NS + 1) * DAY_NS
    rec = FrameRecorder(tmp_path, anchor_ns=day_end - 1_000)
    # items are stamped with monotonic_ns() + anchor: force the two sides of midnight
    rec._items = [(K_IN, -10**9, ["a"]), (K_IN, 10**9, ["b"])]
    rec.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and all(frames.DAY_FILE.match(n) for n in names)
    assert [r.payload for r in iter_records(tmp_path) if r.kind == K_IN] == [b"a", b"b"]


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_a_torn_tail_loses_only_the_last_frame(tmp_path_factory, cut: int) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("torn")
    rec = FrameRecorder(d, anchor_ns=T0)
    for i in range(5):  # five flushes = five zstd frames
        rec.inbound([f'{{"n":{i},"pad":"{"x" * (i * 300)}"}}'])
        rec.flush()
    rec.close()
    (path,) = list(d.iterdir())
    whole = path.read_bytes()
    full = [r.payload for r in iter_records(d)]
    cut = cut % len(whole)
    path.write_bytes(whole[:cut])
    got = [r.payload for r in iter_records(d)]  # never raises
    assert got == full[:len(got)]  # a prefix: nothing reordered or invented
    repair(path)
    contents, good, why = frames._scan(path.read_bytes())
    assert why is None and good == path.stat().st_size
    # appending after the repair continues cleanly
    rec2 = FrameRecorder(d, anchor_ns=T0)
    rec2.inbound(['{"after":1}'])
    rec2.close()
    again = [r.payload for r in iter_records(d)]
    assert again[:len(got)] == got  # every record read before the repair is kept
    assert again[len(got)].startswith(b'{"format"') and again[len(got) + 1:] == [b'{"after":1}']


async def test_the_recorder_task_flushes_every_interval(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, anchor_ns=T0, flush_interval_ms=20)
    async with trio.open_nursery() as n:
        n.start_soon(rec.run)
        rec.inbound(['{"x":1}'])
        await trio.sleep(0.2)
        # written while still running: readable by another process now
        assert [r.payload for r in iter_records(tmp_path) if r.kind == K_IN] == [b'{"x":1}']
        n.cancel_scope.cancel()
    assert rec.stats.flushes >= 1


def test_a_write_error_is_logged_and_counted_never_raised(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "frames"
    blocker.write_text("a file where the frames dir should be")
    rec = FrameRecorder(blocker, anchor_ns=T0)
    rec.inbound(['{"x":1}'])
    rec.close()  # no exception
    assert rec.stats.write_errors == 1
    assert "frames: cannot write" in caplog.text


def test_a_full_queue_drops_and_counts_instead_of_growing(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    rec = FrameRecorder(tmp_path, anchor_ns=T0, max_pending=3)
    for i in range(5):
        rec.inbound([f'{{"n":{i}}}', "x"])
    assert rec.stats.dropped == 6  # the header and two reads fit; three reads of two frames not
    rec.close()
    assert "dropped" in caplog.text
    assert [r.payload for r in iter_records(tmp_path) if r.kind == K_IN] == [
        b'{"n":0}', b"x", b'{"n":1}', b"x"]
