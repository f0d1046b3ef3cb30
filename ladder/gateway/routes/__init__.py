"""The gateway's HTTP routes, one thin module per API."""
