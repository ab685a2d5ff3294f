"""Runs the segment service: `python -m services.segment`."""

from services.common.config import Settings
from services.common.server import serve
from services.segment.servicer import build

if __name__ == "__main__":
    serve(Settings.from_env("segment"), build)
