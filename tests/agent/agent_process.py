"""Run an agent as its own process, with the control plane (Registry on SQLite) inside it.

    python agent_process.py STATE_DB DATA_DIR SERVICE_SPEC_JSON

Used to SIGKILL a real agent process and check that its instances die with it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from jishi.agent import Agent
from jishi.agent.main import run_until_signalled
from jishi.registry import Registry, ServiceSpec
from jishi.store.sqlite import SqliteStore


async def main(db: Path, data_dir: Path, spec_json: str) -> None:
    store = await SqliteStore.open(db)
    registry = Registry(store)
    await registry.put_service(ServiceSpec.model_validate_json(spec_json))
    try:
        await run_until_signalled(Agent(registry, data_dir, "process-agent"))
    finally:
        await store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
