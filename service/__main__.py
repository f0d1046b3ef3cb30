"""``python -m service``: serve the gateway with settings from the environment and ``$LADDER_CONFIG``."""

from service.server import serve
from service.settings import load_settings

serve(load_settings())
