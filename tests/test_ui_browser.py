"""The web page in a real browser: Debian's chromium, headless, driven by Selenium against
`python -m dripml ui` started as a subprocess on loopback. A non-technical user's whole path:
pick the tabular recipe, upload an Adult sample, pick the label, set the budget, run to the
end, read the leaderboard and the frontier, pick a point, deploy it and call the endpoint.

A PNG screenshot of each page is kept under ``tests/artifacts/ui/`` (or
``$DRIPML_TEST_ARTIFACTS/ui``), with ``timings.json`` (seconds from upload to a deployed
endpoint)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from conftest import free_port, stop_process_group

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,1000")
RECIPE = "tabular-classification"
BUDGET_S = 20
FAMILIES = ("logistic_regression", "lightgbm")  # the quick ones: xgboost unticked
RUN_TIMEOUT_S = 240
DEPLOY_TIMEOUT_S = 90

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver "
                              "(apt-get install chromium chromium-driver)"),
]


def _artifacts() -> Path:
    root = os.environ.get("DRIPML_TEST_ARTIFACTS")
    folder = Path(root) / "ui" if root else Path(__file__).parent / "artifacts" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(what: str, check: Callable[[], Any], timeout_s: float, *,
          every_s: float = 0.25, explain: Callable[[], str] = lambda: "") -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}. {explain()}")
        time.sleep(every_s)


class UiProcess:
    """`python -m dripml ui` in its own process group, logging to a file."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "ui.log"
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "DRIPML_TRACKING_URI", "DRIPML_UI_TOKEN")}
        command = [sys.executable, "-m", "dripml", "ui", "--host", "127.0.0.1",
                   "--port", str(self.port), "--data-dir", str(root / "ui"),
                   "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=root, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "UI log tail:\n" + "\n".join(text.splitlines()[-lines:])

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"drip ui exited with {self.process.returncode}. {self.tail()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_process_group(self.process, grace_s=20)


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UiProcess]:
    server = UiProcess(tmp_path)
    try:
        _wait("drip ui to answer /healthz", server.healthy, 60, explain=server.tail)
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def _screenshot(driver: Any, name: str) -> Path:
    """The whole page (the window grown to its height) as ``<artifacts>/<name>.png``."""
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 40, 800), 6000))
    path = _artifacts() / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def _severe_console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def _record(frame: pd.DataFrame) -> dict[str, Any]:
    """One row of ``frame`` as a JSON record (NaN as null), without the label."""
    row = frame.drop(columns=["income"]).dropna().iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def test_a_user_runs_compares_and_deploys_a_recipe_in_the_browser(
        ui: UiProcess, browser: Any, adult_small_csv: dict[str, Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    find = driver.find_element

    def text(element_id: str) -> str:
        found = driver.find_elements(By.ID, element_id)
        return found[0].text.strip() if found else ""

    # 1. The recipes page: the shipped tabular recipe, by its title.
    driver.get(f"{ui.url}/")
    link = find(By.ID, f"recipe-{RECIPE}")
    assert link.text, "the recipe link shows its title"
    assert find(By.CSS_SELECTOR, "nav").text.split() == ["Recipes", "Runs"]
    _screenshot(driver, "1-recipes")
    link.click()

    # 2. The form: choose the file (uploaded at once), then its columns fill the label list.
    form = _wait("the recipe form", lambda: driver.find_elements(By.ID, "run-form"), 15)[0]
    assert form.get_attribute("data-recipe") == RECIPE
    started = time.monotonic()
    find(By.ID, "file").send_keys(str(adult_small_csv["train"]))
    label = find(By.ID, "knob-label")
    _wait("the label list to fill from the uploaded file's header",
          lambda: label.is_enabled() and "income" in [o.get_attribute("value")
                                                       for o in Select(label).options],
          30, explain=lambda: f"upload status: {text('upload-status')!r}, "
                              f"error: {text('error-file')!r}")
    Select(label).select_by_value("income")
    for box in find(By.ID, "knob-families").find_elements(By.CSS_SELECTOR, "input"):
        if box.is_selected() != (box.get_attribute("value") in FAMILIES):
            box.click()
    assert find(By.ID, "help-time_budget_s").text, "each knob shows its help text"
    budget = find(By.ID, "knob-time_budget_s")
    budget.clear()
    budget.send_keys("7")  # below the recipe's minimum: the API's error shows by the field
    find(By.ID, "submit-run").click()
    error = _wait("the budget's error next to its field", lambda: text("error-time_budget_s"),
                  15, explain=lambda: f"form error: {text('form-error')!r}")
    assert "at least 10" in error and budget.get_attribute("aria-invalid") == "true"
    _screenshot(driver, "2-recipe-form-error")
    assert [m for m in _severe_console_errors(driver) if "status of 422" not in m] == []
    budget.clear()
    budget.send_keys(str(BUDGET_S))
    _screenshot(driver, "2-recipe-form")
    find(By.ID, "submit-run").click()

    # 3. The run page: live progress, then the results once finished.
    _wait("the run page", lambda: "/runs/" in driver.current_url, 30,
          explain=lambda: f"form error: {text('form-error')!r}")
    run_id = driver.current_url.rstrip("/").rsplit("/", 1)[-1]
    # A best score, not just a trial done: the first trial to end may have been pruned or cut
    # by the budget, and then there is no best yet (it failed the CI run so, once).
    _wait("live progress (a best score so far) or the run's end",
          lambda: (text("progress-done") not in ("", "0") and text("progress-best") != "-")
          or text("run-status") not in ("queued", "running"), RUN_TIMEOUT_S, explain=ui.tail)
    assert text("run-status") == "running", "trials were seen done while the run was running"
    assert text("progress-step")
    _screenshot(driver, "3-run-progress")
    status = _wait("the run to end", lambda: text("run-status") in
                   ("finished", "failed", "cancelled") and text("run-status"),
                   RUN_TIMEOUT_S, every_s=1, explain=ui.tail)
    assert status == "finished", f"run {run_id} {status}: {text('run-error')}"
    run_s = time.monotonic() - started
    leaderboard = find(By.ID, "leaderboard").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert 1 <= len(leaderboard) <= 10
    assert find(By.ID, "test-metrics").find_elements(By.CSS_SELECTOR, "tbody th")
    points = find(By.ID, "frontier").find_elements(By.CSS_SELECTOR, "a[href*='version=']")
    assert points, "the frontier plot links its points to their versions"
    _screenshot(driver, "4-run-results")

    # 4. Pick a point on the frontier: the page comes back with it in the deploy form.
    point = points[-1]
    version = point.get_dom_attribute("href").rsplit("version=", 1)[-1]  # an SVG <a>
    driver.execute_script(
        "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true,"
        " view: window}));", point)
    _wait(f"the page for picked version {version}",
          lambda: driver.current_url.endswith(f"?version={version}"), 15)
    assert Select(find(By.ID, "deploy-version")).first_selected_option.get_attribute(
        "value") == version
    assert find(By.CSS_SELECTOR, "#frontier-table tr.picked")

    # 5. Deploy: the endpoint URL and a curl line appear, and the endpoint predicts.
    find(By.ID, "deploy-button").click()
    endpoint = _wait("the endpoint URL", lambda: text("endpoint-url"), DEPLOY_TIMEOUT_S,
                     explain=lambda: f"deploy error: {text('error-deploy')!r}. {ui.tail()}")
    deployed_s = time.monotonic() - started
    assert endpoint.startswith("http://127.0.0.1:")
    assert text("curl-line").startswith("curl ") and endpoint in text("curl-line")
    _screenshot(driver, "5-deployed")
    record = _record(pd.read_csv(adult_small_csv["test"]))
    answer = httpx.post(f"{endpoint.rstrip('/')}/predict", json={"records": [record]},
                        timeout=30, trust_env=False)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] in {"<=50K", ">50K"}

    # 6. The runs list shows it finished.
    driver.get(f"{ui.url}/runs")
    row = find(By.ID, f"run-{run_id}").find_element(By.XPATH, "./ancestor::tr")
    assert "finished" in row.text
    _screenshot(driver, "6-runs")
    assert _severe_console_errors(driver) == []
    (_artifacts() / "timings.json").write_text(json.dumps(
        {"upload_to_finished_s": round(run_s, 1), "upload_to_deployed_s": round(deployed_s, 1),
         "time_budget_s": BUDGET_S, "train_rows": 1200}, indent=2))
