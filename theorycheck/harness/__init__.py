"""What runs the claims for a user: the audit, the battery, the pytest plugin, shards and the CLI."""
