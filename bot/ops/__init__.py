"""What an operator runs: the `integrations-bot` console script (`cli`), the readiness report
(`check`), the container health probe (`healthcheck`), and connection settings from a sandbox's
credentials file (`credentials_file`).

The top layer: may import everything, and `sandbox.cli` to serve the sandbox.
"""
