"""Fixtures for the page tests: a small registry, the real server (tests/service helpers), and headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))

from svc_helpers import REPO, Server  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CAPTIONS = ["a red circle", "a blue square", "a green star", "a yellow triangle", "a photo of a cat", "a dog"] * 3
KEY = "page-secret"
MAX_BODY = 4 * 1024 * 1024
COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")


def artifacts_dir() -> Path:
    """Where screenshots go: ``$SSLZOO_TEST_ARTIFACTS`` or ``artifacts/page`` (git-ignored)."""
    path = Path(os.environ.get("SSLZOO_TEST_ARTIFACTS") or REPO / "artifacts" / "page")
    path.mkdir(parents=True, exist_ok=True)
    return path


def shape_png(shape: str, colour: str, seed: int, size: int = 32) -> bytes:
    """A coloured shape on a pale random background, as PNG bytes."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(image)
    lo, hi = int(rng.integers(2, 8)), size - int(rng.integers(2, 8))
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse([lo, lo, hi, hi], fill=fill)
    elif shape == "square":
        draw.rectangle([lo, lo, hi, hi], fill=fill)
    else:
        draw.polygon([(size // 2, lo), (hi, hi), (lo, hi)], fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def thumbnail_uri(png: bytes) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").resize((48, 48)).save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="session")
def page_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with ``default`` (ViT-nano, 28 px) and ``clip`` (ViT-nano + 2-layer text tower), as in tests/service."""
    import torch

    import zoo
    from zoo.tokenizer import train_wordpiece

    home = tmp_path_factory.mktemp("page_home")
    registry = zoo.Registry(home, readonly_roots=())  # session fixture: the shipped models hidden here too
    torch.manual_seed(0)
    zoo.save(zoo.build_encoder("vit_nano", in_chans=3, img_size=28), "default", registry=registry)
    clip = zoo.build_clip("vit_nano", train_wordpiece(CAPTIONS, vocab_size=200), embed_dim=32, img_size=28,
                          text_args={"width": 64, "layers": 2, "heads": 2})
    zoo.save(clip.eval(), "clip", registry=registry)
    return home


@pytest.fixture(scope="module")
def server(page_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real service (``bentoml serve``) with the API key on and a 4 MiB body limit."""
    data = tmp_path_factory.mktemp("page_data")
    srv = Server(page_home, data, data / "server.log", SSLZOO_API_KEY=KEY, SSLZOO_MAX_REQUEST_BYTES=str(MAX_BODY))
    try:
        yield srv.wait()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def shapes_index(server) -> dict[str, dict]:
    """Index ``shapes``: 4 colours × 3 shapes × 3 images through ``clip``, each with a thumbnail and labels."""
    items: dict[str, dict] = {}
    seed = 0
    for shape in SHAPES:
        for colour in COLOURS:
            for rep in range(3):
                png = shape_png(shape, colour, seed)
                seed += 1
                items[f"{colour}-{shape}-{rep}"] = {"png": png, "metadata": {
                    "label": f"{colour} {shape}", "shape": shape, "colour": colour, "thumbnail": thumbnail_uri(png)}}
    body = {"index": "shapes", "model": "clip", "ids": list(items),
            "images": ["data:image/png;base64," + base64.b64encode(v["png"]).decode() for v in items.values()],
            "metadata": [v["metadata"] for v in items.values()]}
    response = server.post("/index/add", body, key=KEY)
    assert response.status_code == 200, response.text
    return items


def chromium_driver(width: int = 1280, height: int = 1000):
    """Headless Debian Chromium through Selenium, with the flags that work in this sandbox; nothing downloads."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="sslzoo-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver._sslzoo_profile = profile  # removed by the fixture
    return driver


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; skipped with the reason when Chromium or Selenium is missing."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"headless browser tests need Debian chromium and chromium-driver ({', '.join(missing)} missing)")
    driver = chromium_driver()
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(driver._sslzoo_profile, ignore_errors=True)
