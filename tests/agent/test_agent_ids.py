"""Agent and instance identity: ids stable across restarts, unique across agents; spec revisions."""

from __future__ import annotations

from pathlib import Path

from agent_harness import FakeControlPlane, service_spec

from jishi.agent import Agent, instance_id, revision_of


def test_agent_id_is_created_once_and_kept(tmp_path: Path) -> None:
    """Without an explicit id the agent makes one and stores it, so a restart keeps its instance ids."""
    first = Agent(FakeControlPlane(), tmp_path).id
    assert Agent(FakeControlPlane(), tmp_path).id == first
    assert (tmp_path / "agent-id").read_text().strip() == first
    assert Agent(FakeControlPlane(), tmp_path / "other").id != first


def test_instance_ids_are_stable_per_slot_and_differ_across_agents() -> None:
    """<service>-<6 hex of the agent id>-<slot>: the same for the same slot, different for another agent."""
    a0 = instance_id("web", "host-a", 0)
    assert a0 == instance_id("web", "host-a", 0)
    assert a0.startswith("web-") and a0.endswith("-0") and len(a0.split("-")[1]) == 6
    assert a0 != instance_id("web", "host-b", 0)
    assert instance_id("web", "host-a", 1) != a0


def test_revision_changes_only_with_what_needs_a_new_process() -> None:
    """command, env and cwd change the revision; instance count and weight do not."""
    base = service_spec("web", 2)
    assert revision_of(base) == revision_of(service_spec("web", 5, weight=9))
    assert revision_of(base) != revision_of(service_spec("web", 2, env={"X": "1"}))
    assert revision_of(base) != revision_of(service_spec("web", 2, command=["other"]))
    assert revision_of(base) != revision_of(service_spec("web", 2, cwd="/tmp"))
