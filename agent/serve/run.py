"""`seal serve`: the chat that learns, over HTTP, for several users.

setup: resolve the server folder (HOME: a seal state folder whose users/ holds one state folder
per user), load the base model once, open every user's state (the writer lock of each, their
recovery), start the update worker and queue what a killed server left unlearned.
run: uvicorn on --host/--port until SIGINT/SIGTERM. cleanup: stop the worker; an update cut short
is learned again at the next start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import warnings
from pathlib import Path

from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.serve.users import UserRegistry
from stores.state import check_home


def add_user(home: Path, name: str) -> int:
    check_home(home, create=True)
    key = UserRegistry(home).add(name)
    print(f"user {name} added; their API key (shown once, only its hash is kept):\n{key}")
    return 0


def list_users(home: Path) -> int:
    names = UserRegistry(home).names()
    print("\n".join(names) if names else "no users yet: seal serve --add-user NAME")
    return 0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SealError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
        ) from None
    sock.listen(128)
    return sock


def run_serve(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    if args.add_user:
        return add_user(home, args.add_user)
    if args.list_users:
        return list_users(home)
    # Deferred: the app loads fastapi, langgraph and the model (torch), not the CLI.
    import uvicorn

    from agent.serve.app import create_app
    from agent.serve.engine import Engine

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises SIGINT/SIGTERM once it has shut down, which would end the process
            # before the update worker is stopped and the states closed.
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {s: signal.signal(s, self.handle_exit) for s in signals}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    host = args.host or cfg.serve.host
    port = cfg.serve.port if args.port is None else args.port
    engine = Engine(home, cfg, log=lambda line: print(line, flush=True))
    if cfg.serve.require_api_keys and not engine.registry.names():
        raise SealError(f"no users yet: `seal serve --add-user NAME --home {home}` makes a key")
    sock = bind(host, port)
    print(f"loading {cfg.model.name} ...", flush=True)
    try:
        engine.start()
        server = Server(
            uvicorn.Config(create_app(engine, cfg), log_level="warning", access_log=False)
        )
        users = ", ".join(engine.registry.names()) or cfg.serve.anonymous_user
        address = sock.getsockname()
        print(f"seal serve: http://{address[0]}:{address[1]}/ (users: {users})", flush=True)
        server.run(sockets=[sock])
    finally:
        engine.stop()
        sock.close()
    print("stopped: what was learned is kept in", home)
    return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--host", help="address to listen on (serve.host, default 127.0.0.1)")
    ap.add_argument("--port", type=int, help="port (serve.port, default 8000; 0: any free one)")
    ap.add_argument("--add-user", metavar="NAME", help="add a user and print their API key once")
    ap.add_argument("--list-users", action="store_true", help="list the users")
