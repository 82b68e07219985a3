"""The app in a real browser: Debian's Chromium driven by Playwright (no browser download).

Loads the page, runs a short training job, sees the table and a plot, projects neighbourhoods and
clicks a point, switches the paired budget and the modality centring, runs a text query and
switches its budget, and saves a screenshot of each tab (to a temp folder, or to
$GERA_SCREENSHOT_DIR to look at them).
"""
import os
from pathlib import Path

import pytest
from conftest import serve_app

from gera.ui import AppConfig, TrainForm
from gera.ui.config import EXAMPLE_FOLDER

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.slow,  # a launched server
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian's chromium is not installed (/usr/bin/chromium)"),
              # gradio's own use of pandas warns on every table it sends
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*")]
TINY = TrainForm(task=f"folder:{EXAMPLE_FOLDER}", budgets=("10",),
                 methods=("gera", "contrastive", "asif"), max_steps=30)
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def url():
    yield from serve_app(AppConfig(gallery_limit=40, defaults=TINY))


@pytest.fixture(scope="module")
def page(url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("button", name="Train & compare", exact=True).wait_for()
        yield page
        browser.close()


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    folder = os.environ.get("GERA_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screens")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()


def test_train_and_see_the_table_and_a_plot(page, screens):
    page.get_by_role("button", name="Train & compare", exact=True).click()
    page.get_by_text("Done in").wait_for()
    table = page.locator("table").filter(has_text="chosen on validation").first
    assert table.get_by_text("contrastive", exact=True).count() >= 1
    assert page.locator(".js-plotly-plot").count() >= 2
    page.screenshot(path=screens / "1-train.png", full_page=True)


def test_neighbourhoods_project_and_a_click_selects_a_point(page, screens):
    open_tab(page, "Neighbourhoods")
    page.locator(".nbhd-clickable .js-plotly-plot").first.wait_for()
    page.locator("#nbhd-summary").get_by_role("cell", name="trustworthiness", exact=True).wait_for()
    # A click on a point, as plotly reports it: the bridge forwards it to the server.
    page.locator(".nbhd-clickable .js-plotly-plot").first.evaluate(
        "plot => plot.emit('plotly_click', {points: [{customdata: 2}]})")
    page.locator("#nbhd-summary").get_by_text("Point 2").wait_for()
    page.screenshot(path=screens / "2-neighbourhoods.png", full_page=True)


def test_neighbourhoods_switch_budget_and_centre_the_modalities(page, screens):
    open_tab(page, "Neighbourhoods")
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="emoji", exact=False).first.click()
    budgets = page.locator("#nbhd-budget")
    budgets.get_by_text("N = 300", exact=True).wait_for()  # the emoji model's budgets
    budgets.get_by_text("N = 30", exact=True).click()
    summary = page.locator("#nbhd-summary")
    summary.get_by_text("(N = 30)", exact=False).wait_for()
    page.locator("#nbhd-gap").get_by_text("modality gap", exact=False).wait_for()
    page.get_by_label("Centre each modality", exact=False).check()
    page.locator("#nbhd-gap").get_by_text("Shown centred", exact=False).wait_for()
    page.screenshot(path=screens / "2b-neighbourhoods-budget.png", full_page=True)


def _gallery_text(page):
    return page.locator(".grid-wrap").first.inner_text()


def test_text_query_shows_images_and_a_budget_switch_answers_it_again(page, screens):
    open_tab(page, "Retrieval playground")
    page.get_by_label("Model (image ↔ text)").click()
    page.get_by_role("option", name="emoji", exact=False).first.click()
    # As a visitor would: search once the radio shows the chosen model's budgets (after a
    # training run the page first held that run's one budget, N = 10).
    page.locator('#image-budget input:checked[value="300"]').wait_for()
    page.get_by_label("Describe an image").fill("a large cat face in the centre")
    page.get_by_role("button", name="Search images", exact=True).click()
    page.locator(".grid-wrap img").nth(15).wait_for()  # 8 results × 2 methods
    page.screenshot(path=screens / "3-retrieval.png", full_page=True)
    answers = {"N = 300": _gallery_text(page)}  # the page starts at N = 300
    budgets = page.locator("#image-budget")
    labels = [b.inner_text().strip() for b in budgets.locator("label").all()]
    for label in [b for b in labels if b != "N = 300"] + ["N = 300"]:
        before = _gallery_text(page)
        budgets.get_by_text(label, exact=True).click()
        page.wait_for_function(
            "before => document.querySelector('.grid-wrap').innerText !== before", arg=before)
        answers.setdefault(label, _gallery_text(page))
        page.screenshot(path=screens / f"3-retrieval-{label.split()[-1]}.png", full_page=True)
    assert _gallery_text(page) == answers["N = 300"]  # back at 300: the same answer again
    assert len(labels) >= 3 and len(set(answers.values())) == len(labels), answers


def test_about_tab(page, screens):
    open_tab(page, "About")
    # read from results/ and checkpoints/ at start-up, not text written into the page
    page.get_by_text("results/emoji-300.txt", exact=False).first.wait_for()
    page.get_by_role("heading", name="The shipped checkpoints").wait_for()
    page.screenshot(path=screens / "4-about.png", full_page=True)
