"""A thin Selenium wrapper for the admin browser tests: visit, log in, fill, submit, read.

Every navigation waits explicitly (the old page goes stale, the new one finishes loading), so
the tests never sleep and never race the live server.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

#: Debian's packages (`apt-get install chromium chromium-driver`); override for other systems.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_PATH", "/usr/bin/chromedriver")

#: Headless, quiet, and nothing fetched from the network behind the tests' back.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1200",
)

#: Seconds an explicit wait may take before the test fails (a page here loads in well under 1 s).
WAIT_SECONDS = 15


def check_chromium() -> None:
    """Raise if Chromium or its driver is not installed (what ``require_service`` checks)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(
                f"{path} not found; install it with `apt-get install chromium chromium-driver`"
                " (or set CHROMIUM_PATH / CHROMEDRIVER_PATH)"
            )


def start_chromium(user_data_dir: str | None = None) -> WebDriver:
    """Start headless Chromium through the installed chromedriver, with a fresh profile.

    The driver path is given explicitly and SE_OFFLINE is set, so Selenium Manager never tries
    to download a driver or a browser.
    """
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={user_data_dir or tempfile.mkdtemp(prefix='chromium-')}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS * 2)
    return driver


@dataclass
class AdminBrowser:
    """The driver plus the live server's URL, with the few gestures the admin tests need."""

    driver: WebDriver
    base_url: str

    @property
    def wait(self) -> WebDriverWait:
        return WebDriverWait(self.driver, WAIT_SECONDS)

    # -- navigation ------------------------------------------------------------------------

    def visit(self, path: str) -> None:
        """Open ``path`` on the live server and wait until it has loaded."""
        self.driver.get(self.base_url + path)
        self._wait_loaded()

    def click_and_wait(self, element: WebElement) -> None:
        """Click something that loads a new page (link, submit button); wait for that page."""
        old_page = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        self.wait.until(EC.staleness_of(old_page))
        self._wait_loaded()

    def click_link(self, text: str) -> None:
        """Follow the first link in the page's content (not the header or the side menu) whose
        text is exactly ``text``."""
        xpath = f"//div[@id='content']//a[normalize-space()={_xpath_literal(text)}]"
        self.click_and_wait(self.wait.until(EC.element_to_be_clickable((By.XPATH, xpath))))

    def open_model(self, name: str) -> None:
        """From the admin's home page, open the change list of the model called ``name``."""
        self.visit("/admin/")
        link = f"a[normalize-space()={_xpath_literal(name)}]"
        xpath = f"//div[@id='content-main']//th[@scope='row']/{link}"
        self.click_and_wait(self.wait.until(EC.element_to_be_clickable((By.XPATH, xpath))))

    def press(self, css: str) -> None:
        """Click the button (or link) matching ``css`` and wait for the page it loads."""
        self.click_and_wait(self.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, css))))

    def press_button(self, label: str) -> None:
        """Click the button whose visible text is ``label`` (object tools, preview page...)."""
        xpath = f"//button[normalize-space()={_xpath_literal(label)}]"
        self.click_and_wait(self.wait.until(EC.element_to_be_clickable((By.XPATH, xpath))))

    def _wait_loaded(self) -> None:
        self.wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    # -- the admin -------------------------------------------------------------------------

    def log_in(self, username: str, password: str = "password") -> None:
        """Log in through the admin's login form, starting from a logged-out browser."""
        self.driver.delete_all_cookies()
        self.visit("/admin/login/?next=/admin/")
        self.fill("id_username", username)
        self.fill("id_password", password)
        self.press("input[type=submit]")
        self.wait.until(EC.presence_of_element_located((By.ID, "user-tools")))  # logged in

    def fill(self, element_id: str, text: str) -> None:
        """Replace the value of the input or textarea with id ``element_id``."""
        field = self.wait.until(EC.element_to_be_clickable((By.ID, element_id)))
        field.clear()
        field.send_keys(text)

    def choose(self, element_id: str, *, value: str) -> None:
        """Pick the option with ``value`` in the <select> with id ``element_id``."""
        Select(self.driver.find_element(By.ID, element_id)).select_by_value(value)

    def messages(self) -> list[str]:
        """The texts of the admin's messages (success, warning, error) on the current page."""
        return [li.text for li in self.driver.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]

    def field_error(self, field_id: str) -> str:
        """The error list shown under the field with id ``field_id`` ("" when there is none)."""
        found = self.driver.find_elements(By.ID, f"{field_id}_error")
        return found[0].text if found else ""

    def readonly(self, field: str) -> str:
        """The text of a read-only field on a change or view page."""
        return self.driver.find_element(By.CSS_SELECTOR, f".field-{field} .readonly").text

    def result_row(self, text: str) -> WebElement:
        """The change list's row whose first column (the object's link) reads ``text``."""
        xpath = f"//table[@id='result_list']//tr[th[normalize-space()={_xpath_literal(text)}]]"
        return self.driver.find_element(By.XPATH, xpath)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def texts(self, css: str) -> list[str]:
        return [element.text for element in self.find_all(css)]

    def page_text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text


def _xpath_literal(text: str) -> str:
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    parts = text.split('"')
    return "concat(" + ", '\"', ".join(f'"{part}"' for part in parts) + ")"
