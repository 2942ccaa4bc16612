"""Block Kit rendering, one module per feature (import from the module itself; nothing is re-exported here)."""
