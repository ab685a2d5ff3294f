"""Runs the delivery service: `python -m services.delivery`."""

from services.common.config import Settings
from services.common.server import serve
from services.delivery.app import build

if __name__ == "__main__":
    serve(Settings.from_env("delivery"), build)
