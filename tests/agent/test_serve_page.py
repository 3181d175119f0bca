"""The web page of `seal serve` in a real headless Chromium (Debian's packages, Selenium): feed a
document, watch it learned, ask, undo. Skipped where no browser is installed (.ci/run installs
one)."""

import pytest

from evals.serve_page import drive, find_browser, open_browser, screenshot
from evals.serve_process import add_users, start_server, tiny_settings

pytestmark = pytest.mark.skipif(
    find_browser() is None,
    reason="no chromium/chromedriver installed: `apt-get install -y chromium chromium-driver` "
    "runs the browser test (CI installs them)",
)


def test_page_feeds_learns_answers_and_undoes(tmp_path, tiny_model_dir):
    home = tmp_path / "serve"
    keys = add_users(home, ["carol"])
    server = start_server(home, tiny_settings(tiny_model_dir), threads=1)
    driver = open_browser()
    try:
        seen = drive(
            driver,
            server.url + "/",
            keys["carol"],
            "The bridge in Rome was built in 1990. Rome is a city on the river Tiber.",
            "When was the bridge built?",
            timeout=120,
        )
        screenshot(driver, tmp_path / "page.png")
    finally:
        driver.quit()
        server.stop()
    assert "learned" in seen["document_row"]
    assert "adapter v1" in seen["status_after_learning"]
    assert "adapter v1" in seen["answer_meta"]  # answered by the adapter that learned it
    assert "update" in seen["history_before_undo"] and "accept" in seen["history_before_undo"]
    assert "adapter none (base)" in seen["status_after_undo"]
    assert (tmp_path / "page.png").stat().st_size > 10_000
