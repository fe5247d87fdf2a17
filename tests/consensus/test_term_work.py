"""Work tagged with the coordinator's term: codec round trip, stale terms dropped by workers."""

from __future__ import annotations

import msgpack
import trio

from eco.runtime.component import Worker
from eco.runtime.consensus import TermWork
from eco.runtime.kernel import Kernel
from eco.runtime.node_codec import ext_hook, packer_default
from eco.runtime.pid import PID


def test_term_work_travels_with_pids_inside():
    work = TermWork(7, {"reply_to": PID("n1", 3, 9), "paths": ["a"]})
    back = msgpack.unpackb(msgpack.packb(work, default=packer_default), ext_hook=ext_hook, strict_map_key=False)
    assert type(back) is TermWork and back.term == 7
    assert back.work == {"reply_to": PID("n1", 3, 9), "paths": ["a"]}


class _Recorder(Worker):
    seen: list = []

    async def handle(self, msg):
        _Recorder.seen.append(msg)


async def test_worker_drops_work_of_a_stale_term():
    _Recorder.seen = []
    async with Kernel("n1", incarnation=1) as kernel:
        pid = await kernel.spawn(_Recorder)
        for term, work in [(3, "a"), (5, "b"), (4, "stale"), (5, "c"), (6, "d")]:
            await kernel.send(pid, TermWork(term, work))
        await kernel.send(pid, "plain")  # untagged work is delivered as is
        with trio.fail_after(2):
            while len(_Recorder.seen) < 5:
                await trio.sleep(0)
    assert _Recorder.seen == ["a", "b", "c", "d", "plain"]
