"""Benchmarks and load tools (`ladder bench ...`): not part of the gateway, which serves without them."""
