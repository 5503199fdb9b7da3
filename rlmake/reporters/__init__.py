"""What a build tells its user. The core emits events; the CLI picks the reporter."""
