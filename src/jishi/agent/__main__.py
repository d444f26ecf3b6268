"""`python -m jishi.agent --control-plane URL --data-dir DIR`."""

from jishi.agent.main import main

raise SystemExit(main())
