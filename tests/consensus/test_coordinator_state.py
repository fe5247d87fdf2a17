"""The replicated coordinator state: state machine, API, checkpoints."""

from __future__ import annotations

import msgpack
import pytest
import trio

from eco.runtime.consensus import Fenced
from eco.runtime.coordinator_state import (
    Checkpointer,
    CoordinatorStateMachine,
    NoState,
    ReplicatedState,
    StateUnavailable,
    encode_state_command,
    restore_coordinator,
    snapshot_coordinator,
)
from eco.runtime.raft import Entry, EntryKind

from consensus_harness import SimEcosystem


def _entry(index: int, *cmd) -> Entry:
    return Entry(1, index, encode_state_command(*cmd), EntryKind.NORMAL)


def test_state_machine_fences_sessions_and_snapshots():
    sm = CoordinatorStateMachine()
    sm.apply(_entry(1, "a@2", 1, 2, "activate", None, "n1"))
    assert sm.apply(_entry(2, "a@2", 2, 2, "put", "k", {"x": [1, 2]})).result is None
    assert sm.apply(_entry(3, "a@2", 3, 2, "incr", "n", 5)).result == 5
    again = sm.apply(_entry(4, "a@2", 3, 2, "incr", "n", 5))  # a retried command: applied once
    assert again.duplicate and again.result == 5 and sm.data["n"] == 5
    assert sm.apply(_entry(5, "b@3", 1, 3, "activate", None, "n2")).result is None
    stale = sm.apply(_entry(6, "a@2", 4, 2, "put", "k", "old"))
    assert stale.result == ["__fenced__", 3] and sm.data["k"] == {"x": [1, 2]}
    assert sm.apply(_entry(7, "z@1", 1, 1, "activate", None, "n3")).result == ["__fenced__", 3]
    assert sm.apply(_entry(8, "b@3", 2, 3, "cas", "k", [{"x": [1, 2]}, "new"])).result is None
    assert sm.apply(_entry(9, "b@3", 3, 3, "cas", "k", ["nope", "x"])).result == ["__cas_failed__", "new"]
    assert sm.apply(_entry(10, "b@3", 4, 3, "incr", "k", 1)).result[0] == "__cas_failed__"  # not a number
    sm.apply(Entry(1, 11, b"\xc1garbage", EntryKind.NORMAL))  # ignored deterministically
    copy = CoordinatorStateMachine()
    copy.restore(sm.snapshot())
    assert (copy.data, copy.epoch, copy.active, copy.activations, copy.applied_index) == \
        (sm.data, 3, "n2", [(2, "n1"), (3, "n2")], 11)


def test_no_state_explains_what_to_declare():
    with pytest.raises(StateUnavailable, match=r"leader: consensus"):
        NoState("tokens").get


def test_replicated_state_api():
    out: dict = {}

    async def coordinator(group, act) -> None:
        s = ReplicatedState(group, act.term)
        await s.activate()
        await s.put("a", {"list": [1]})
        got = await s.get("a")
        got["list"].append(2)  # a copy: the replica is untouched
        assert await s.get("a") == {"list": [1]}
        assert await s.get("missing", 42) == 42
        assert await s.incr("n") == 1 and await s.incr("n", 9) == 10
        with pytest.raises(TypeError):
            await s.incr("a")
        assert await s.update("seen", lambda old: old + [3], default=[]) == [3]
        assert await s.update("seen", lambda old: old + [4], default=[]) == [3, 4]
        await s.put_many({"batch/1": 1, "batch/2": 2, "other": 0})
        assert await s.items("batch/") == {"batch/1": 1, "batch/2": 2}
        assert await s.delete("other") == 0 and await s.get("other") is None
        with pytest.raises(TypeError):
            await s.put(7, "x")
        out["ok"] = True

    eco = SimEcosystem(3, 11, coordinator)

    async def scenario(e):
        await e.wait_for(lambda: out.get("ok"), 10, "the API walk-through")

    eco.run(scenario)


class _Coord:
    """Just enough of a Coordinator for snapshot/restore."""

    def __init__(self, state=None) -> None:
        self.state = state if state is not None else NoState()
        self.app = b"app-state-1"
        self.restored: list[bytes] = []

    def snapshot_state(self):
        return self.app

    async def restore_state(self, blob: bytes) -> None:
        self.restored.append(blob)


@pytest.mark.parametrize("scheme", ["sqlite", "file"])
async def test_checkpoint_round_trip_without_consensus(tmp_path, scheme):
    url = f"sqlite://{tmp_path}/c.db" if scheme == "sqlite" else f"file://{tmp_path}/ckpt"
    cp = Checkpointer(url, "tokens", 1.0)
    try:
        c = _Coord()
        kv, app = await snapshot_coordinator(c)
        assert (kv, app) == (None, b"app-state-1")
        assert await cp.save(kv, app, {"term": 0}) == 1
        c.app = b"app-state-2"
        await cp.save(*(await snapshot_coordinator(c)))
        fresh = _Coord()
        assert await restore_coordinator(fresh, cp) == 2
        assert fresh.restored == [b"app-state-2"]
    finally:
        cp.close()


def test_takeover_seeds_an_empty_replicated_state_from_the_newest_checkpoint(tmp_path):
    url = f"sqlite://{tmp_path}/c.db"
    cp = Checkpointer(url, "eco", 1.0, in_thread=False)  # simulated clock: no threads
    cp._store.save("eco", msgpack.packb({"kv": {"done": 3, "batch/1": [1]}, "app": b"A"}), {})
    out: dict = {}

    async def coordinator(group, act) -> None:
        s = ReplicatedState(group, act.term)
        await s.activate()
        c = _Coord(s)
        out["version"] = await restore_coordinator(c, cp)
        out["kv"] = await s.items()
        out["restored"] = list(c.restored)
        # a second takeover with state present does not overwrite it from the checkpoint
        await s.put("done", 4)
        await restore_coordinator(c, cp)
        out["after"] = await s.get("done")

    eco = SimEcosystem(3, 5, coordinator)

    async def scenario(e):
        await e.wait_for(lambda: "after" in out, 10, "restore")

    eco.run(scenario)
    cp.close()
    assert out["version"] == 1
    assert out["kv"] == {"done": 3, "batch/1": [1]}
    assert out["restored"] == [b"A"]
    assert out["after"] == 4
