"""Built-in benchmark suites (registered in :mod:`vaebench.builtin`)."""
