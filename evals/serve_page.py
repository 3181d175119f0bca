"""The web page of `seal serve` driven in a real headless browser: Debian's `chromium` and
`chromium-driver` packages through Selenium (nothing downloads a browser). Used by the browser
test (tiny model) and by `python evals/bench.py serve` for results/serve/page.png."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


def find_browser() -> tuple[str, str] | None:
    """(browser, driver) paths of an installed Chromium and its driver, or None."""
    browser = next((p for name in CHROMIUM if (p := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    return (browser, driver) if browser and driver else None


def open_browser(width: int = 1280, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("no chromium and chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(found[1]), options=options)


def wait_for(condition, timeout: float, what: str, poll: float = 0.25):
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except StaleElementReferenceException:  # the page redrew its tables meanwhile
            value = None
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"the page did not show {what} within {timeout:.0f} s")


def drive(driver, url: str, key: str, text: str, question: str, timeout: float = 300.0) -> dict:
    """What a user does on the page: give the key, feed a text, watch it learned, ask a
    question (the answer streams in), undo the update. Returns what the page showed."""
    from selenium.webdriver.common.by import By

    def by_id(name: str):
        return driver.find_element(By.ID, name)

    driver.get(url)
    by_id("key").send_keys(key)
    by_id("save-key").click()
    wait_for(lambda: "adapter" in by_id("status").text, 30, "the status line")
    by_id("text").send_keys(text)
    by_id("feed").click()
    fed = wait_for(
        lambda: "doc-" in by_id("feed-result").text and by_id("feed-result").text,
        120,
        "the fed document",
    )
    doc_id = fed.split(":")[0]
    learned = wait_for(
        lambda: (
            (rows := driver.find_elements(By.ID, f"doc-row-{doc_id}"))
            and "learned" in rows[0].text
            and rows[0].text
        ),
        timeout,
        f"{doc_id} learned",
    )
    status_after_learning = by_id("status").text
    by_id("question").send_keys(question)
    by_id("ask").click()
    answer = wait_for(
        lambda: (
            (seals := driver.find_elements(By.CSS_SELECTOR, "#messages .seal"))
            and (metas := driver.find_elements(By.CSS_SELECTOR, "#messages .meta"))
            and "adapter" in metas[-1].text
            and (seals[-1].text, metas[-1].text)
        ),
        timeout,
        "a streamed answer",
    )
    history = by_id("history").text
    by_id("undo").click()
    undone = wait_for(
        lambda: "rolled back" in by_id("messages").text and "rollback" in by_id("history").text,
        60,
        "the undo",
    )
    return {
        "document": doc_id,
        "document_row": learned,
        "status_after_learning": status_after_learning,
        "answer": answer[0],
        "answer_meta": answer[1],
        "history_before_undo": history,
        "undone": bool(undone),
        "status_after_undo": by_id("status").text,
    }


def screenshot(driver, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
