"""Runs the profile service: `python -m services.profile`."""

from services.common.config import Settings
from services.common.server import serve
from services.profile.servicer import build

if __name__ == "__main__":
    serve(Settings.from_env("profile"), build)
