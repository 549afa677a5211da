"""The web UI in a real browser: two headless Chromium windows on `/` showing the todo demo live.
What one page does (add, toggle) shows up in the other through the WebSocket, and a re-render
does not take the text or the focus away from an input someone is typing into."""
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian chromium, chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (NoSuchElementException,  # noqa: E402
                                        StaleElementReferenceException, WebDriverException)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DEADLINE = 20  # seconds, for anything the page must show
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--window-size=1280,1000"]
DEMO = "todo-v2-demo"
CARD = f"#panel-{DEMO}"
BODY = f"{CARD} .panel-body"
INPUT = f'{BODY} input[name="text"]'

ITEMS_JS = f"""
return Array.from(document.querySelectorAll('{BODY} li[data-id]')).map(li => ({{
    id: li.dataset.id, text: li.textContent, done: li.classList.contains('done')}}));
"""
INPUT_STATE_JS = f"""
const input = document.querySelector('{INPUT}');
return input ? [input.value, document.activeElement === input] : null;
"""


@pytest.fixture
def browsers(tmp_path):
    """Factory: browsers(name) opens a fresh headless Chromium with its own profile."""
    drivers = []

    def open_browser(name):
        options = Options()
        options.binary_location = CHROMIUM
        for arg in CHROME_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={tmp_path / f'profile-{name}'}")
        service = Service(executable_path=CHROMEDRIVER,
                          log_path=str(tmp_path / f"chromedriver-{name}.log"))
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(DEADLINE)
        drivers.append((name, driver))
        return driver

    yield open_browser
    for name, driver in drivers:
        try:
            driver.save_screenshot(str(tmp_path / f"{name}.png"))  # for a failure's post-mortem
        except WebDriverException:
            pass
        finally:
            driver.quit()


def wait(driver, predicate, message):
    return WebDriverWait(driver, DEADLINE, poll_frequency=0.05,
                         ignored_exceptions=(NoSuchElementException,
                                             StaleElementReferenceException)).until(
        predicate, message)


def items(driver):
    return driver.execute_script(ITEMS_JS)


def item_with(driver, text):
    """The todo item whose text contains `text`, or None."""
    return next((i for i in items(driver) if text in i["text"]), None)


def open_ui(driver, srv):
    driver.get(srv.base_url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "ws-status").text.strip() == "connected",
         "#ws-status to say connected")
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, INPUT).is_displayed() and
         d.find_element(By.CSS_SELECTOR, f"{BODY} form button[type='submit']"),
         f"the add form in {BODY}")
    card = driver.find_element(By.CSS_SELECTOR, CARD)
    assert card.get_attribute("data-panel") == DEMO
    assert "panel-card" in card.get_attribute("class").split()


def click(driver, selector):
    """Clicks the element, finding it again if a re-render replaced it meanwhile."""
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).click() or True,
         f"a clickable {selector}")


def add_item(driver, text):
    field = driver.find_element(By.CSS_SELECTOR, INPUT)
    field.clear()
    field.send_keys(text)
    click(driver, f"{BODY} form button[type='submit']")


def test_two_pages_show_the_todo_demo_live_and_a_rerender_keeps_focus(server, browsers,
                                                                      tmp_path):
    srv = server("--set", "panels.demos=true")  # the todo demo loads on this first start
    page1, page2 = browsers("page1"), browsers("page2")
    open_ui(page1, srv)
    open_ui(page2, srv)
    assert items(page1) == [] and items(page2) == []

    # Added in page 1, shown in both.
    add_item(page1, "buy milk from e2e")
    for page in (page1, page2):
        wait(page, lambda d: item_with(d, "buy milk from e2e"),
             "the new item in both pages")
    milk = item_with(page2, "buy milk from e2e")
    assert milk["done"] is False, milk

    # Toggled in page 2, shown as done in page 1.
    click(page2, f'{BODY} li[data-id="{milk["id"]}"] button.toggle')
    for page in (page1, page2):
        wait(page, lambda d: (item_with(d, "buy milk from e2e") or {}).get("done") is True,
             "the item marked done in both pages")

    # Someone types in page 2 while page 1 adds an item: the re-render of page 2 keeps the
    # typed text and the focus (a morph, not a replacement of the card's HTML).
    field = page2.find_element(By.CSS_SELECTOR, INPUT)
    field.click()
    field.send_keys("half-typed")
    assert page2.execute_script(INPUT_STATE_JS) == ["half-typed", True]
    add_item(page1, "second item from e2e")
    wait(page2, lambda d: item_with(d, "second item from e2e"),
         "the second item in page 2")
    assert page2.execute_script(INPUT_STATE_JS) == ["half-typed", True], \
        "the re-render lost the typed text or the focus"
    # Still usable: typing on continues the same text.
    page2.find_element(By.CSS_SELECTOR, INPUT).send_keys(" and more")
    assert page2.execute_script(INPUT_STATE_JS) == ["half-typed and more", True]

    assert [i["text"].count("e2e") for i in items(page1)] == [1, 1]
    stored = srv.request("GET", "/api/storages/todos").body["data"]
    assert len(stored["items"]) == 2, stored
    page1.save_screenshot(str(tmp_path / "page1-final.png"))
    page2.save_screenshot(str(tmp_path / "page2-final.png"))
    assert (tmp_path / "page2-final.png").stat().st_size > 0
