"""Placement decisions (eco.runtime.placement): policies, strategies, spread, replace, spawn rules."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eco.plan import Distribution, SpawnRule
from eco.runtime.membership import Member, MemberState
from eco.runtime.placement import (
    LoadReport,
    PlacementContext,
    PlacementError,
    candidates,
    place,
    replace,
    spawn_allowed,
)

UP, SUSPECT, DOWN, LEFT = MemberState.UP, MemberState.SUSPECT, MemberState.DOWN, MemberState.LEFT


def cluster(n: int, zones: str = "abc", state: dict[str, MemberState] | None = None) -> list[Member]:
    state = state or {}
    return [Member(f"n{i}", 0, state.get(f"n{i}", UP), {"zone": zones[i % len(zones)]}) for i in range(n)]


def ctx(members, requester="n0", **kw) -> PlacementContext:
    return PlacementContext(members, requester, **kw)


# ------------------------------------------------------------------ policies


def test_only_up_members_are_candidates():
    members = cluster(5, state={"n1": SUSPECT, "n2": DOWN, "n3": LEFT})
    assert [m.name for m in candidates(Distribution(), ctx(members))] == ["n0", "n4"]
    assert set(place(6, Distribution(), ctx(members)).nodes) == {"n0", "n4"}


def test_explicit_nodes_are_respected_and_missing_ones_skipped():
    members = cluster(5, state={"n3": DOWN})
    dist = Distribution(policy="explicit_nodes", nodes=("n3", "n1", "ghost", "n4"))
    assert place(4, dist, ctx(members)).nodes == ("n1", "n4", "n1", "n4")


def test_explicit_nodes_all_down_is_a_clear_error():
    dist = Distribution(policy="explicit_nodes", nodes=("n3", "n9"))
    with pytest.raises(PlacementError, match=r"explicit_nodes \[n3, n9\] but none of those nodes is up"):
        place(1, dist, ctx(cluster(5, state={"n3": DOWN})))


def test_local_only_uses_the_requester():
    assert place(3, Distribution(policy="local_only"), ctx(cluster(4), "n2")).nodes == ("n2",) * 3
    with pytest.raises(PlacementError, match="local_only but the requesting node n2 is not up"):
        place(1, Distribution(policy="local_only"), ctx(cluster(4, state={"n2": SUSPECT}), "n2"))


def test_no_member_up_is_an_error():
    with pytest.raises(PlacementError, match="no cluster member is up"):
        place(1, Distribution(), ctx(cluster(2, state={"n0": DOWN, "n1": DOWN})))


def test_zero_workers_and_bad_arguments():
    assert place(0, Distribution(), ctx(cluster(2))).nodes == ()
    with pytest.raises(ValueError, match="negative"):
        place(-1, Distribution(), ctx(cluster(2)))
    with pytest.raises(ValueError, match="seeded rng"):
        place(1, Distribution(placement="random"), ctx(cluster(2)))


# ---------------------------------------------------------------- strategies


def test_round_robin_rotates_and_continues_from_the_cursor():
    members = cluster(3)
    first = place(4, Distribution(), ctx(members))
    assert first.nodes == ("n0", "n1", "n2", "n0")
    second = place(2, Distribution(), ctx(members, cursor=first.cursor))
    assert second.nodes == ("n1", "n2")


def test_random_is_deterministic_for_a_seed_and_uses_the_rng():
    members = cluster(8)
    a = place(20, Distribution(placement="random"), ctx(members, rng=random.Random(7)))
    b = place(20, Distribution(placement="random"), ctx(members, rng=random.Random(7)))
    c = place(20, Distribution(placement="random"), ctx(members, rng=random.Random(8)))
    assert a == b
    assert a != c
    assert len(set(a.nodes)) > 3


def test_least_loaded_prefers_low_scores_and_counts_its_own_placements():
    members = cluster(3)
    loads = {
        "n0": LoadReport("n0", at=9.0, processes=10),
        "n1": LoadReport("n1", at=9.0, processes=2),
        "n2": LoadReport("n2", at=9.0, processes=3),
    }
    result = place(4, Distribution(placement="least_loaded"), ctx(members, now=10.0, loads=loads))
    # scores 10/2/3: n1 (2->3), n1 again (ties n2 at 3, wins by name; 3->4), n2 (3->4), n1 (tie, by name).
    assert result.nodes == ("n1", "n1", "n2", "n1")


def test_least_loaded_score_weighs_mailboxes_and_loop_lag():
    assert LoadReport("x", 0, processes=2, mailbox_depth=30, loop_lag=0.05).score() == pytest.approx(2 + 3 + 5)
    members = cluster(2)
    loads = {"n0": LoadReport("n0", 0, processes=1, loop_lag=0.1), "n1": LoadReport("n1", 0, processes=5)}
    assert place(1, Distribution(placement="least_loaded"), ctx(members, loads=loads)).nodes == ("n1",)


def test_least_loaded_ignores_stale_reports():
    members = cluster(3)
    loads = {
        "n0": LoadReport("n0", at=0.0, processes=0),  # stale: would otherwise win
        "n1": LoadReport("n1", at=99.0, processes=4),
        "n2": LoadReport("n2", at=99.0, processes=8),
    }
    # n0 counts as the mean of the fresh scores (6): n1 (4) wins, then n1 (5), then n0 (6) by name.
    result = place(3, Distribution(placement="least_loaded"), ctx(members, now=100.0, loads=loads, max_report_age=5))
    assert result.nodes == ("n1", "n1", "n0")


def test_least_loaded_without_reports_spreads_evenly():
    result = place(6, Distribution(placement="least_loaded"), ctx(cluster(3), now=100.0))
    assert Counter(result.nodes) == {"n0": 2, "n1": 2, "n2": 2}


def test_topology_aware_prefers_the_requesters_zone_and_balances_there():
    members = cluster(6)  # zones: n0 a, n1 b, n2 c, n3 a, n4 b, n5 c
    result = place(4, Distribution(placement="topology_aware"), ctx(members, "n1"))
    assert result.nodes == ("n1", "n4", "n1", "n4")


def test_topology_aware_uses_an_injected_distance():
    hops = {"n0": 0, "n1": 3, "n2": 1, "n3": 1, "n4": 2}
    result = place(3, Distribution(placement="topology_aware"),
                   ctx(cluster(5), "n0", distance=lambda a, b: hops[b] if b != "n0" else 5))
    assert result.nodes == ("n2", "n3", "n2")


# -------------------------------------------------------------------- spread


def test_spread_over_zones_first_then_strategy():
    members = cluster(6)
    result = place(6, Distribution(spread="zone"), ctx(members))
    zones = Counter(m.labels["zone"] for name in result.nodes for m in members if m.name == name)
    assert zones == {"a": 2, "b": 2, "c": 2}
    assert Counter(result.nodes) == dict.fromkeys(["n0", "n1", "n2", "n3", "n4", "n5"], 1)


def test_spread_accounts_for_current_workers():
    members = cluster(6)
    result = place(2, Distribution(spread="zone"), ctx(members, current={"n0": 2, "n1": 1}))
    zone_of = {m.name: m.labels["zone"] for m in members}
    assert sorted(zone_of[n] for n in result.nodes) == ["b", "c"]


def test_spread_on_a_label_nobody_has_falls_back_to_all_candidates():
    assert Counter(place(4, Distribution(spread="rack"), ctx(cluster(2))).nodes) == {"n0": 2, "n1": 2}


def test_spread_on_node_label_is_one_per_node():
    assert sorted(place(3, Distribution(spread="node"), ctx(cluster(3))).nodes) == ["n0", "n1", "n2"]


# ------------------------------------------------------------------- replace


def test_replace_avoids_the_dead_node_and_keeps_spread_balanced():
    members = cluster(6)  # the member list has not yet marked n1 down
    current = {"n0": 1, "n1": 2, "n2": 1, "n3": 1, "n5": 1}  # n1's two workers are lost
    homes, cursor = replace(["w1", "w7"], "n1", Distribution(spread="zone"), ctx(members, current=current))
    assert set(homes) == {"w1", "w7"}
    assert "n1" not in homes.values()
    assert homes["w1"] == "n4"  # zone b lost both its workers; n4 is its only other node
    zone_of = {m.name: m.labels["zone"] for m in members}
    after = Counter({zone_of[n]: c for n, c in current.items() if n != "n1"})
    after.update(zone_of[n] for n in homes.values())
    assert max(after.values()) - min(after.values()) <= 1
    assert isinstance(cursor, int)


def test_replace_with_no_survivor_is_an_error():
    with pytest.raises(PlacementError):
        replace([0], "n0", Distribution(), ctx(cluster(1)))


# ------------------------------------------------------------- spawn rules


def test_spawn_allowed_without_rules():
    assert spawn_allowed((), Member("n1")) == (True, "allowed")
    assert spawn_allowed((), None) == (True, "allowed")


def test_spawn_allowed_matches_zone_node_and_user_labels():
    rules = (SpawnRule(label="zone", value="a"), SpawnRule(label="node", value="n7"),
             SpawnRule(label="tier", value="gold"))
    assert spawn_allowed(rules, Member("n1", labels={"zone": "a"}))[0]
    assert spawn_allowed(rules, Member("n7", labels={"zone": "b"}))[0]
    assert spawn_allowed(rules, Member("n2", labels={"tier": "gold"}))[0]
    ok, reason = spawn_allowed(rules, Member("n2", labels={"zone": "b"}))
    assert not ok
    assert reason == 'spawn refused: node n2 is not allowed to spawn here (allowed from zone "a" or node "n7" or tier "gold")'


def test_spawn_refused_for_unknown_or_down_requesters():
    ok, reason = spawn_allowed((SpawnRule(label="zone", value="a"),), None)
    assert not ok and "not a known member" in reason
    ok, reason = spawn_allowed((), Member("n3", 2, DOWN, {"zone": "a"}))
    assert not ok and reason == "spawn refused: requesting node n3 is down in this node's member list"
    assert not spawn_allowed((), Member("n3", 2, LEFT))[0]
    assert spawn_allowed((), Member("n3", 2, SUSPECT))[0]


# ---------------------------------------------------------------- properties

states = st.sampled_from([UP, UP, UP, SUSPECT, DOWN, LEFT])


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 12))
    members = [
        Member(f"n{i:02d}", draw(st.integers(0, 3)), draw(states), {"zone": draw(st.sampled_from("abcd"))})
        for i in range(n)
    ]
    strategy = draw(st.sampled_from(["round_robin", "random", "least_loaded", "topology_aware"]))
    loads = {
        m.name: LoadReport(m.name, at=draw(st.floats(0, 20)), processes=draw(st.integers(0, 50)),
                           mailbox_depth=draw(st.integers(0, 500)), loop_lag=draw(st.floats(0, 0.5)))
        for m in members if draw(st.booleans())
    }
    return members, strategy, loads, draw(st.integers(0, 40)), draw(st.integers(0, 2**32))


@given(scenarios(), st.booleans())
def test_property_never_a_member_that_is_not_up(scenario, spread):
    members, strategy, loads, n, seed = scenario
    dist = Distribution(placement=strategy, spread="zone" if spread else None)
    up = {m.name for m in members if m.state == UP}
    c = ctx(members, members[0].name, now=20.0, loads=loads, rng=random.Random(seed))
    if not up:
        with pytest.raises(PlacementError):
            place(n, dist, c)
        return
    result = place(n, dist, c)
    assert len(result.nodes) == n
    assert set(result.nodes) <= up


@given(scenarios(), st.data())
def test_property_explicit_nodes_respected(scenario, data):
    members, strategy, loads, n, seed = scenario
    listed = tuple(data.draw(st.lists(st.sampled_from([m.name for m in members] + ["zz"]), min_size=1, max_size=5)))
    dist = Distribution(policy="explicit_nodes", nodes=listed, placement=strategy)
    allowed = {m.name for m in members if m.state == UP} & set(listed)
    c = ctx(members, members[0].name, now=20.0, loads=loads, rng=random.Random(seed))
    if not allowed:
        with pytest.raises(PlacementError):
            place(n, dist, c)
    else:
        assert set(place(n, dist, c).nodes) <= allowed


@given(scenarios())
def test_property_spread_is_balanced_within_one(scenario):
    members, strategy, loads, n, seed = scenario
    up = [m for m in members if m.state == UP]
    if not up:
        return
    result = place(n, Distribution(placement=strategy, spread="zone"),
                   ctx(members, up[0].name, now=20.0, loads=loads, rng=random.Random(seed)))
    zone_of = {m.name: m.labels["zone"] for m in up}
    per_zone = Counter({z: 0 for z in zone_of.values()})
    per_zone.update(zone_of[name] for name in result.nodes)
    assert max(per_zone.values()) - min(per_zone.values()) <= 1


@given(scenarios(), st.booleans())
def test_property_deterministic_for_a_fixed_seed(scenario, spread):
    members, strategy, loads, n, seed = scenario
    if not any(m.state == UP for m in members):
        return
    dist = Distribution(placement=strategy, spread="zone" if spread else None)
    runs = [place(n, dist, ctx(members, members[0].name, now=20.0, loads=loads, rng=random.Random(seed)))
            for _ in range(2)]
    shuffled = list(members)
    random.Random(seed).shuffle(shuffled)  # member order must not matter either
    runs.append(place(n, dist, ctx(shuffled, members[0].name, now=20.0, loads=loads, rng=random.Random(seed))))
    assert runs[0] == runs[1] == runs[2]


@given(scenarios(), st.data())
def test_property_replace_avoids_dead_node_and_rebalances(scenario, data):
    members, strategy, loads, n, seed = scenario
    up = [m for m in members if m.state == UP]
    if len(up) < 2:
        return
    dist = Distribution(placement=strategy, spread="zone")
    rng = random.Random(seed)
    first = place(n, dist, ctx(members, up[0].name, now=20.0, loads=loads, rng=rng))
    dead = data.draw(st.sampled_from([m.name for m in up]))
    lost = [i for i, node in enumerate(first.nodes) if node == dead]
    current = Counter(node for node in first.nodes if node != dead)
    homes, _ = replace(lost, dead, dist, ctx(members, up[0].name, now=20.0, loads=loads, rng=rng, current=current))
    assert sorted(homes) == lost
    assert dead not in homes.values()
    assert set(homes.values()) <= {m.name for m in up}
    # The re-spawned workers go to the zones that lost them first: no surviving zone ends up
    # more than one above the emptiest one unless it already was before the failure.
    zone_of = {m.name: m.labels["zone"] for m in up if m.name != dead}
    before = Counter({z: 0 for z in zone_of.values()})
    before.update(zone_of[node] for node in current.elements())
    after = before + Counter(zone_of[node] for node in homes.values())
    after.update({z: 0 for z in zone_of.values()})
    assert max(after.values()) - min(after.values()) <= max(1, max(before.values()) - min(before.values()))
