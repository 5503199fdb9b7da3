"""Where job commands run. Every executor implements executors.base.Executor."""
