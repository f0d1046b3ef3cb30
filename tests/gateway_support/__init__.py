"""Real parts for the gateway tests: a tiny checkpoint, a fake OpenAI-compatible upstream, servers on loopback."""
