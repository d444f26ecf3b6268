"""The agent: the per-host supervisor that runs, health-checks, registers and restarts service instances.

Public API: `Agent(control_plane, data_dir, agent_id=None)` (`await agent.run()`, `agent.stop()`), and
`jishi.agent.main.serve(control_plane_url, data_dir, agent_id=None)` for the `jishi agent` command.
"""

from jishi.agent.agent import Agent, instance_id, revision_of
from jishi.agent.checks import probe
from jishi.agent.supervisor import Supervisor

__all__ = ["Agent", "Supervisor", "instance_id", "probe", "revision_of"]
