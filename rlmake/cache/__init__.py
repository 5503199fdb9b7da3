"""The artifact cache: outputs of successful jobs stored by job key, restored instead of rebuilt."""
