"""The routing core: pool, policy, scoring, pricing and upstream contracts; imports no gateway or training code."""
