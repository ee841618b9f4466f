"""pytest hooks, options, markers and the ``flops`` fixture (placeholder)."""
