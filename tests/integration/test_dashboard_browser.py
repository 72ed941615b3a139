"""The dashboard in a real browser (Debian's Chromium, driven by Selenium): log in, create
a PostgreSQL instance through the form and watch it go from BUILD to ACTIVE without a
reload, add a user, take a backup, restore it as a new instance, see a chart with data,
delete both. Each page is saved as a screenshot in build/screenshots/, and no page may
log a console error."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.integration.stack import Api, Stack

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail("Chromium and its driver are missing: run scripts/test-deps.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600",
                 "--disable-dev-shm-usage", "--no-first-run"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def until(check: Callable[[], object], within: float, what: str, every: float = 0.3) -> object:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            found = check()
        except (NoSuchElementException, StaleElementReferenceException):
            found = None  # not there yet, or swapped by htmx while read
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"waited {within:.0f} s for {what}")


class Pages:
    """The browser, with a screenshot and a console check after each page."""

    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver, self.base, self.shots = driver, base, 0
        SHOTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def shot(self, name: str) -> None:
        self.shots += 1
        self.driver.save_screenshot(str(SHOTS / f"{self.shots:02d}-{name}.png"))
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], f"console errors on {name}: {errors}"

    def fill(self, field: str, value: str) -> None:
        element = self.driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def text(self, element_id: str) -> str:
        return str(self.driver.find_element(By.ID, element_id).text)

    def instance_id(self) -> str:
        return self.driver.current_url.rstrip("/").rsplit("/", 1)[-1]

    def active_without_reload(self, within: float = 180.0) -> None:
        """Mark the page, then wait for ACTIVE: the mark is still there, so no reload."""
        self.driver.execute_script("window.cellarMark = 'same page';")
        until(lambda: self.driver.find_element(By.ID, "instance-status").get_attribute(
            "data-status") == "ACTIVE", within, "the instance to be ACTIVE")  # fmt: skip
        assert self.driver.execute_script("return window.cellarMark;") == "same page"


def create(pages: Pages, name: str, backup: str = "") -> str:
    if not backup:
        pages.open("/dashboard/instances")
        pages.click("new-instance")
    pages.fill("name", name)
    Select(pages.driver.find_element(By.ID, "datastore")).select_by_value("postgresql/15")
    Select(pages.driver.find_element(By.ID, "flavor")).select_by_value("1")
    pages.fill("databases", "shop")
    pages.fill("user_name", "app")
    pages.fill("user_password", "App-Pass-word1")
    if backup:
        chosen = Select(pages.driver.find_element(By.ID, "backup")).first_selected_option
        assert chosen.get_attribute("value") == backup
    pages.shot(f"create-{name}")
    pages.click("create")
    until(lambda: pages.driver.find_elements(By.ID, "instance-status"), 30, "the instance page")
    return pages.instance_id()


def test_a_team_works_with_an_instance_in_the_dashboard(
    api: Api, stack: Stack, browser: webdriver.Chrome
) -> None:
    assert stack.identity is not None
    name, password, _user_id = stack.identity.user(api.project)
    pages = Pages(browser, stack.url)
    pages.open("/dashboard/")
    assert "Log in" in browser.title
    pages.shot("login")
    pages.fill("username", name)
    pages.fill("password", password)
    pages.fill("project", api.project_name)
    pages.click("log-in")
    until(lambda: browser.find_elements(By.ID, "instance-rows"), 30, "the instance list")
    pages.shot("instances")

    made: list[str] = []
    try:
        work_in_the_dashboard(api, pages, made)
    finally:
        for instance_id in made:  # what a failure left: the test must not leave containers
            if api.call("DELETE", f"/instances/{instance_id}").status_code == 202:
                api.wait_instance(instance_id, {"GONE", "ERROR"})


def work_in_the_dashboard(api: Api, pages: Pages, made: list[str]) -> None:
    browser = pages.driver
    first = create(pages, "web-one")
    made.append(first)
    pages.active_without_reload()
    until(lambda: browser.find_elements(By.ID, "connect-2"), 15, "the connection strings")
    assert 'psql "host=' in browser.find_element(By.ID, "connect-2").text
    assert browser.execute_script("return window.cellarMark;") == "same page"
    pages.shot("instance-active")

    pages.fill("new-user", "bob")
    pages.fill("new-user-password", "B0b-Pass-word")
    pages.fill("new-user-databases", "shop")
    pages.click("add-user-button")

    def user_listed() -> bool:
        browser.refresh()
        return "bob" in pages.text("users")

    until(user_listed, 60, "user bob in the list", every=1.0)
    pages.shot("instance-user")

    pages.click("take-backup")

    def backup_done() -> bool:
        pages.open("/dashboard/backups")
        return "COMPLETED" in pages.text("backups")

    until(backup_done, 120, "the backup to complete", every=1.0)
    pages.shot("backups")
    browser.find_element(By.LINK_TEXT, "Restore").click()
    backup_id = browser.current_url.rsplit("backup=", 1)[-1]
    copy = create(pages, "web-copy", backup=backup_id)
    made.append(copy)
    pages.active_without_reload()
    pages.shot("restored")

    pages.open(f"/dashboard/instances/{first}")
    chart = "figure.chart[data-metric=connections]"

    def drawn() -> bool:  # two samples at least: a line, not a dot (the page refreshes it)
        found = browser.find_elements(By.CSS_SELECTOR, chart)
        return bool(found) and int(found[0].get_attribute("data-points") or 0) >= 2

    until(drawn, 90, "a chart of two samples or more", every=1.0)
    pages.shot("chart")
    pages.open("/dashboard/audit")
    assert "instance.create" in pages.text("audit")
    pages.shot("audit")

    for instance_id in (copy, first):
        pages.open(f"/dashboard/instances/{instance_id}")
        pages.click("delete-instance")
        assert "Delete instance?" in browser.find_element(By.TAG_NAME, "h1").text
        pages.shot(f"confirm-delete-{instance_id[:8]}")
        pages.click("confirm")
        until(lambda: browser.find_elements(By.ID, "instance-rows"), 30, "the instance list")
    for instance_id in (copy, first):
        assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
        made.remove(instance_id)
    pages.shot("deleted")
