"""vaebench's built-in encoders, decoders and priors (registered in :mod:`vaebench.builtin`)."""
