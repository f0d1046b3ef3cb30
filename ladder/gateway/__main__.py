"""``python -m ladder.gateway``: serve the gateway with settings from the environment and ``$LADDER_CONFIG``."""

from ladder.gateway.server import serve
from ladder.gateway.settings import load_settings

serve(load_settings())
