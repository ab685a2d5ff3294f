"""Runs the scoring service: `python -m services.scoring`."""

from services.common.config import Settings
from services.common.server import serve
from services.scoring.servicer import build

if __name__ == "__main__":
    serve(Settings.from_env("scoring"), build)
