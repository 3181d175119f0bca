"""Fixtures of the agent tests: the local news server of the ingestion tests."""

import pytest

from evals.news_server import NewsWorld, start


@pytest.fixture
def serve_news():
    """Factory: `serve_news(seed)` serves a NewsWorld with three stories published on
    127.0.0.1 (evals/news_server.py); every server is shut down after the test."""
    servers = []

    def serve(seed: int):
        world = NewsWorld(seed=seed)
        world.publish(3)
        servers.append(start(world))
        return servers[-1]

    yield serve
    for server in servers:
        server.shutdown()
