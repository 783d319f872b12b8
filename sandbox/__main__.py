"""`python -m sandbox`: the same as `integrations-bot sandbox`."""

from sandbox.cli import main

raise SystemExit(main())
