"""Test support for `ladder collect` and `ladder judge`: a fake pool of models on loopback."""
