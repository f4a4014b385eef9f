"""Built-in metrics (registered in :mod:`vaebench.builtin`)."""
