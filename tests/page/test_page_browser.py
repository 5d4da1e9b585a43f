"""The page in real headless Chromium against the real service: what it shows must be what the API answers.

One server and one browser for the module (tests run in file order and share the page's state where
that is the point: the text query of one test is the query the embedding view marks in the next).
Screenshots go to ``artifacts/page/`` (or ``$SSLZOO_TEST_ARTIFACTS``); their paths are printed.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from conftest import KEY, MAX_BODY, artifacts_dir, shape_png
from svc_helpers import bomb_png

pytestmark = pytest.mark.slow
WAIT = 60  # seconds: a guard against hanging on 2 shared cores, not a performance assertion
LABELS = ["red circle", "blue square", "green triangle", "yellow square"]
TEMPLATES = ["a photo of a {}.", "a {}"]
K = 5


def wait_for(driver, condition, what: str, timeout: float = WAIT):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        logs = "\n".join(str(e) for e in driver.get_log("browser"))
        raise AssertionError(f"timed out waiting for {what}; browser log:\n{logs}") from None


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def set_value(driver, element_id: str, value: str) -> None:
    """Replace a field's value the way typing would, then fire ``change`` (Selenium's clear() does not)."""
    element = by_id(driver, element_id)
    element.clear()
    element.send_keys(value)
    driver.execute_script("arguments[0].dispatchEvent(new Event('change', {bubbles: true}))", element)


def upload(driver, path) -> None:
    driver.execute_script("document.getElementById('neighbours').replaceChildren();"
                          "document.getElementById('label-bars').replaceChildren();"
                          "document.getElementById('file-input').value = '';")  # the same file twice still fires
    by_id(driver, "file-input").send_keys(str(path))


def uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def shot(driver, name: str) -> None:
    path = artifacts_dir() / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")


def neighbours(driver) -> list[tuple[str, float]]:
    return [(li.get_attribute("data-id"), float(li.get_attribute("data-score"))) for li in css(driver, "#neighbours li")]


def assert_same_hits(shown: list[tuple[str, float]], api_hits: list[dict]) -> None:
    assert [i for i, _ in shown] == [h["id"] for h in api_hits]
    np.testing.assert_allclose([s for _, s in shown], [h["score"] for h in api_hits], atol=1e-6)


@pytest.fixture(scope="module")
def page(browser, server, shapes_index):
    browser.set_window_size(1280, 1000)
    browser.get(server.url + "/")
    wait_for(browser, lambda d: by_id(d, "model-select").get_attribute("value") and
             d.execute_script("return document.body.dataset.ready") == "true", "the page to load models and indexes")
    return browser


def test_page_routes_sit_beside_the_api(server):
    page = server.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>sslzoo" in page.text
    script = server.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert server.get("/static/missing.js").status_code == 404
    assert server.get("/page/config").json()["api_key_required"] is True
    assert server.get("/page/config").json()["max_request_bytes"] == MAX_BODY
    assert server.get("/models").status_code == 200 and server.get("/index/stats").status_code == 200
    assert server.get("/docs.json").status_code == 200  # BentoML's OpenAPI spec is still served
    missing = server.post("/index/projection", {"index": "nope"})
    assert missing.status_code == 404 and missing.json()["type"] == "not_found"
    assert server.post("/index/projection", {"method": "umap"}).status_code == 400


def test_image_query_shows_the_apis_neighbours_and_zero_shot_labels(page, server, shapes_index, tmp_path):
    assert by_id(page, "index-input").get_attribute("value") == "shapes"
    assert by_id(page, "model-select").get_attribute("value") == "clip@1"  # the index's own model, chosen for it
    assert by_id(page, "model-info").get_attribute("data-model") == "clip@1"
    assert "es-" in by_id(page, "model-info").text  # the embedding space is shown
    set_value(page, "k-input", str(K))
    set_value(page, "labels-input", "\n".join(LABELS))
    set_value(page, "templates-input", "\n".join(TEMPLATES))
    png = shape_png("circle", "red", seed=1000)
    path = tmp_path / "query red circle.png"
    path.write_bytes(png)
    upload(page, path)
    wait_for(page, lambda d: len(css(d, "#neighbours li")) == K and len(css(d, "#label-bars li")) == len(LABELS),
             "neighbours and zero-shot bars")

    api = server.post("/search", {"images": [uri(png)], "index": "shapes", "k": K, "model": "clip@1"}).json()
    assert_same_hits(neighbours(page), api["results"][0])
    for li, hit in zip(css(page, "#neighbours li"), api["results"][0], strict=True):
        img = li.find_element("css selector", "img")
        assert img.get_attribute("src") == hit["metadata"]["thumbnail"]
        assert hit["id"] in img.get_attribute("alt")
        assert hit["metadata"]["label"] in li.text and f"{hit['score']:.3f}" in li.text

    labels = server.post("/classify", {"images": [uri(png)], "model": "clip@1", "candidate_labels": LABELS,
                                       "hypothesis_templates": TEMPLATES, "top_k": len(LABELS)}).json()
    bars = [(li.get_attribute("data-label"), float(li.get_attribute("data-score"))) for li in css(page, "#label-bars li")]
    assert [b[0] for b in bars] == [r["label"] for r in labels["results"][0]]
    np.testing.assert_allclose([b[1] for b in bars], [r["score"] for r in labels["results"][0]], atol=1e-6)
    widths = page.execute_script("return [...document.querySelectorAll('#label-bars .bar span')].map(s => s.style.width)")
    np.testing.assert_allclose([float(w.rstrip("%")) for w in widths],
                               [round(100 * r["score"], 1) for r in labels["results"][0]], atol=1e-9)
    assert by_id(page, "query-preview").get_attribute("alt") == "Your query image, query red circle.png"
    shot(page, "01-image-query.png")


def test_a_first_search_in_an_empty_index_explains_instead_of_failing(page, server, tmp_path):
    """A fresh service has no index yet: the neighbours panel says how to start one, with no error box,
    while zero-shot labels work at once."""
    set_value(page, "index-input", "never-made")
    try:
        assert "does not exist yet" in by_id(page, "index-info").text
        path = tmp_path / "first visit.png"
        path.write_bytes(shape_png("square", "blue", seed=2000))
        upload(page, path)
        wait_for(page, lambda d: by_id(d, "neighbours").get_attribute("data-query") == "empty-index" and
                 len(css(d, "#label-bars li")) > 0, "the empty-index explanation and the zero-shot bars")
        assert "Nothing to search yet" in by_id(page, "nn-status").text and "never-made" in by_id(page, "nn-status").text
        assert not by_id(page, "nn-message").is_displayed()
        assert css(page, "#neighbours li") == []
        assert server.post("/search", {"images": [uri(shape_png("square", "blue", seed=2000))],
                                       "index": "never-made"}).status_code == 404  # the API still says 404
    finally:  # the tests after this one search "shapes", whatever happened here
        set_value(page, "index-input", "shapes")


def test_text_query_shows_the_apis_neighbours(page, server):
    field = by_id(page, "text-input")
    field.clear()
    field.send_keys("a red circle\n")
    wait_for(page, lambda d: by_id(d, "neighbours").get_attribute("data-query") == "text" and
             len(css(d, "#neighbours li")) == K, "text-query neighbours")
    api = server.post("/search", {"texts": ["a red circle"], "index": "shapes", "k": K, "model": "clip@1"}).json()
    assert_same_hits(neighbours(page), api["results"][0])
    assert "a red circle" in by_id(page, "nn-status").text


def test_embedding_view_matches_the_projection_endpoint_and_marks_the_query(page, server, shapes_index):
    by_id(page, "space-button").click()
    wait_for(page, lambda d: by_id(d, "scatter").get_attribute("data-points"), "the scatter plot")
    canvas = by_id(page, "scatter")
    api = server.post("/index/projection", {"index": "shapes", "texts": ["a red circle"], "model": "clip@1"}).json()
    assert api["cached"] is True  # the page's request fitted it; this one is a cache hit
    assert int(canvas.get_attribute("data-points")) == len(shapes_index) == len(api["points"]["ids"])
    qx, qy = (float(v) for v in canvas.get_attribute("data-query").split(","))
    np.testing.assert_allclose([qx, qy], [api["query"]["x"], api["query"]["y"]], atol=1e-9)
    assert canvas.get_attribute("data-placement") == "projected"
    assert by_id(page, "colour-by").get_attribute("value") == "label"
    legend = by_id(page, "legend").text
    assert "label:" in legend and "red circle" in legend and "your query" in legend
    assert "PCA of 36 item(s)" in by_id(page, "space-status").text
    # keyboard: focus the plot, step to the first point: its tooltip shows its id and the stored thumbnail
    canvas.send_keys("n")
    first = api["points"]["ids"][0]
    wait_for(page, lambda d: by_id(d, "tooltip").get_attribute("data-id") == first and
             (css(d, "#tooltip img")[0].get_attribute("src") or "").startswith("data:image/jpeg"), "the tooltip thumbnail")
    assert css(page, "#tooltip img")[0].get_attribute("src") == shapes_index[first]["metadata"]["thumbnail"]
    canvas.send_keys("+")  # zooming redraws without losing the data
    assert int(canvas.get_attribute("data-points")) == len(shapes_index)
    shot(page, "02-embedding-pca.png")
    from selenium.webdriver.support.select import Select

    Select(by_id(page, "proj-method")).select_by_value("tsne")
    wait_for(page, lambda d: by_id(d, "scatter").get_attribute("data-placement") == "nearest-neighbour", "t-SNE view")
    tsne = server.post("/index/projection", {"index": "shapes", "method": "tsne", "texts": ["a red circle"],
                                             "model": "clip@1"}).json()
    assert tsne["cached"] is True
    assert tsne["query"]["nearest_id"] in by_id(page, "space-status").text
    assert "t-SNE has no map for new points" in by_id(page, "space-status").text
    Select(by_id(page, "proj-method")).select_by_value("pca")


def test_adding_needs_the_key_and_stores_a_thumbnail(page, server, tmp_path):
    png = shape_png("square", "green", seed=2000)
    path = tmp_path / "green square.png"
    path.write_bytes(png)
    upload(page, path)
    wait_for(page, lambda d: len(css(d, "#neighbours li")) == K, "neighbours of the new image")
    by_id(page, "add-panel").find_element("css selector", "summary").click()
    set_value(page, "add-id", "page-added-1")
    set_value(page, "add-label", "green square")
    by_id(page, "api-key").clear()
    by_id(page, "add-button").click()
    wait_for(page, lambda d: by_id(d, "add-message").is_displayed(), "the unauthorised message")
    message = by_id(page, "add-message")
    assert message.get_attribute("data-status") == "401"
    assert "Unauthorised" in message.text and "API key" in message.text
    assert server.post("/index/get", {"index": "shapes", "ids": ["page-added-1"]}).json()["items"] == [None]
    by_id(page, "api-key").send_keys(KEY)
    by_id(page, "add-button").click()
    wait_for(page, lambda d: "page-added-1" in by_id(d, "add-status").text, "the added confirmation")
    assert not by_id(page, "add-message").is_displayed()
    item = server.post("/index/get", {"index": "shapes", "ids": ["page-added-1"]}).json()["items"][0]
    assert item["metadata"]["label"] == "green square" and item["metadata"]["source"] == "page"
    from PIL import Image

    thumb = Image.open(io.BytesIO(base64.b64decode(item["metadata"]["thumbnail"].split(",", 1)[1])))
    assert thumb.format == "JPEG" and max(thumb.size) <= 80
    assert "37 item(s)" in by_id(page, "add-status").text


def test_bad_input_shows_the_servers_message_and_the_server_keeps_serving(page, server, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, not a picture\n")
    upload(page, fake)
    wait_for(page, lambda d: by_id(d, "nn-message").is_displayed() and by_id(d, "zs-message").is_displayed(),
             "the bad-image messages")
    for element_id in ("nn-message", "zs-message"):
        message = by_id(page, element_id)
        assert message.get_attribute("data-status") == "400"
        assert "not an image the server can read" in message.text and "not a recognised image format" in message.text
    assert css(page, "#neighbours li") == []
    shot(page, "03-bad-image.png")

    bomb = tmp_path / "huge.png"
    bomb.write_bytes(bomb_png(20_000))
    upload(page, bomb)
    wait_for(page, lambda d: by_id(d, "nn-message").get_attribute("data-status") == "413", "the too-large message")
    text = by_id(page, "nn-message").text
    assert "Too large" in text and "400000000 pixels" in text
    assert "too large to preview" in by_id(page, "query-name").text  # never decoded in the browser either

    heavy = tmp_path / "heavy.png"
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, size=(1100, 1100, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(heavy, "PNG")
    assert heavy.stat().st_size * 4 / 3 > MAX_BODY
    upload(page, heavy)
    wait_for(page, lambda d: by_id(d, "query-message").is_displayed(), "the request-size message")
    assert "accepts requests up to 4.0 MB" in by_id(page, "query-message").text

    set_value(page, "index-input", "no-such-index")
    good = tmp_path / "good.png"
    good.write_bytes(shape_png("triangle", "yellow", seed=3000))
    upload(page, good)
    wait_for(page, lambda d: by_id(d, "neighbours").get_attribute("data-query") == "empty-index",
             "the empty-index explanation")
    assert "no-such-index" in by_id(page, "nn-status").text and not by_id(page, "nn-message").is_displayed()
    assert "does not exist yet" in by_id(page, "index-info").text

    assert server.get("/readyz").status_code == 200
    set_value(page, "index-input", "shapes")
    upload(page, good)
    wait_for(page, lambda d: len(css(d, "#neighbours li")) == K and not by_id(d, "nn-message").is_displayed(),
             "neighbours again after the errors")
    api = server.post("/search", {"images": [uri(good.read_bytes())], "index": "shapes", "k": K,
                                  "model": "clip@1"}).json()
    assert_same_hits(neighbours(page), api["results"][0])


def test_keyboard_and_alt_text(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    controls = page.find_elements(By.CSS_SELECTOR, "input, select, textarea, button, canvas")
    unnamed = [e.get_attribute("id") or e.tag_name for e in controls
               if (e.is_displayed() or e.get_attribute("id") == "file-input") and not (e.accessible_name or "").strip()]
    assert unnamed == [], f"controls without an accessible name: {unnamed}"
    assert "Drop an image" in by_id(page, "file-input").accessible_name
    missing_alt = page.execute_script(
        "return [...document.images].filter(i => !i.hidden && !(i.getAttribute('alt') || '').trim()).map(i => i.src.slice(0, 60))")
    assert missing_alt == []
    # Tab from the top of the page reaches the drop zone's file input, then the text field
    page.execute_script("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
    order = []
    for _ in range(12):
        ActionChains(page).send_keys(Keys.TAB).perform()
        order.append(page.execute_script("return document.activeElement.id || document.activeElement.tagName"))
    assert "file-input" in order and "text-input" in order, order
    assert order.index("file-input") < order.index("text-input")


@pytest.mark.parametrize(("width", "name"), [(1280, "page-desktop.png"), (390, "page-phone.png")])
def test_layout_at_desktop_and_phone_width(page, width, name):
    page.set_window_size(width, 1000)
    wait_for(page, lambda d: d.execute_script("return window.innerWidth") <= width, "the resize")
    overflow = page.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    query = by_id(page, "query-h").rect
    results = by_id(page, "nn-h").rect
    if width >= 900:
        assert results["x"] > query["x"] + query["width"] / 2  # side by side
    else:
        assert results["y"] > query["y"]  # stacked
    height = page.execute_script("return document.documentElement.scrollHeight")
    page.set_window_size(width, min(height, 4000))
    shot(page, name)
    page.set_window_size(1280, 1000)
