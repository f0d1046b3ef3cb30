"""Real parts for the gateway tests: a tiny checkpoint, a fake OpenAI-style upstream, loopback servers."""
