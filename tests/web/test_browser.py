"""The demo page and the API docs in a real browser: Debian's chromium and chromium-driver, driven
by Selenium, headless, against a live server, with every host but the loopback unresolvable
(an air-gapped machine). `make test` installs the browser where it can (scripts/browser.sh);
where it cannot, these tests are skipped and say why."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.alignment.helpers import photo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline, as air-gapped
    "--window-size=1400,1000",
]

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (scripts/browser.sh installs "
    "them with apt-get as root; `make test` runs it)",
)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (a dev dependency) missing")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """A colour photo (PNG) and a view of it moved by about 4 % of its size."""
    rgb = cv2.resize(cv2.imread(str(_skimage("astronaut.png"))), (320, 240))
    H = np.array([[1.02, 0.03, -6.0], [-0.02, 1.01, 5.0], [3e-5, -2e-5, 1.0]])
    b = cv2.warpPerspective(rgb, H, (320, 240), borderMode=cv2.BORDER_REFLECT)
    d = tmp_path_factory.mktemp("pair")
    cv2.imwrite(str(d / "a.png"), rgb)
    cv2.imwrite(str(d / "b.png"), b)
    return d / "a.png", d / "b.png", rgb


def _skimage(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def _wait(driver, predicate, timeout: float = 30.0):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(predicate)


def _open_demo(driver, url: str) -> None:
    driver.get(url + "/")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".sample"))


def _estimate(driver, a: Path, b: Path, method: str) -> None:
    driver.find_element(By.ID, "file-a").send_keys(str(a))
    driver.find_element(By.ID, "file-b").send_keys(str(b))
    driver.find_element(By.CSS_SELECTOR, f'label[for="method-{method}"]').click()
    _wait(driver, lambda d: d.find_element(By.ID, "run").is_enabled())
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: d.find_element(By.ID, "result").get_attribute("data-state") != "busy")


def _canvas(driver) -> tuple[np.ndarray, int, int]:
    """The viewer's pixels (BGR) and where B's pixel (0, 0) sits on them."""
    data = driver.execute_script("return document.getElementById('view').toDataURL('image/png')")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(data.split(",", 1)[1]), np.uint8), 1)
    view = driver.find_element(By.ID, "view")
    return img, int(view.get_attribute("data-ox")), int(view.get_attribute("data-oy"))


def _view(driver, mode: str, slider: int) -> None:
    """Pick a view and set its slider (by script: the sticky header may cover the controls)."""
    driver.execute_script(
        "document.getElementById('view-' + arguments[0]).click();"
        "const s = document.getElementById('slider'); s.value = arguments[1];"
        "s.dispatchEvent(new Event('input'));",
        mode,
        slider,
    )


def test_demo_page_shows_the_apis_answer(browser, live_url, pair):
    a_path, b_path, a_img = pair
    _open_demo(browser, live_url)
    _estimate(browser, a_path, b_path, "network")
    assert browser.find_element(By.ID, "result").get_attribute("data-state") == "done", (
        browser.find_element(By.ID, "error").text
    )
    shown = np.array(
        [
            float(td.get_attribute("data-value"))
            for td in browser.find_elements(By.CSS_SELECTOR, "#matrix td")
        ]
    ).reshape(3, 3)
    files = {
        "image_a": ("a.png", a_path.read_bytes(), "image/png"),
        "image_b": ("b.png", b_path.read_bytes(), "image/png"),
    }
    api = httpx.post(live_url + "/estimate?method=network", files=files, timeout=60).json()
    H = np.array(api["b_H_a"])
    np.testing.assert_allclose(shown, H, rtol=1e-5, atol=1e-6)
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#matrix td")]
    assert cells[0] == f"{H[0, 0]:.4f}" and cells[2] == f"{H[0, 2]:.4f}"
    confidence = browser.find_element(By.ID, "confidence-value").text
    assert confidence == f"{100 * api['quality']['confidence']:.0f} %"
    rows = browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")
    assert [r.get_attribute("data-name") for r in rows] == [c["name"] for c in api["candidates"]]

    # A's outline: the API's corners_in_b
    corners = json.loads(browser.find_element(By.ID, "outline").get_attribute("data-corners"))
    np.testing.assert_allclose(corners, api["corners_in_b"], atol=1e-3)

    # swipe at 100 %: A warped by the matrix shown, where A covers B (as cv2.warpPerspective)
    _view(browser, "swipe", 100)
    img, ox, oy = _canvas(browser)
    ref = cv2.warpPerspective(a_img, H, (320, 240), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(np.full((240, 320), 255, np.uint8), H, (320, 240))
    inside = cv2.erode(cover, np.ones((5, 5), np.uint8)) == 255
    got = img[oy : oy + 240, ox : ox + 320].astype(float)
    assert inside.mean() > 0.8
    assert np.abs(got - ref)[inside].mean() < 1.5

    # the three views differ, and each keeps B's size in view
    hashes = set()
    for mode, value in (("blend", 50), ("checker", 50), ("swipe", 50)):
        _view(browser, mode, value)
        img, ox, oy = _canvas(browser)
        assert img.shape[0] >= 240 + oy and img.shape[1] >= 320 + ox
        hashes.add(img.tobytes().__hash__())
    assert len(hashes) == 3


def test_large_images_are_downscaled_before_upload(browser, live_url, tmp_path):
    big = photo("camera", (2400, 1600))
    H = np.array([[1.0, 0.01, 30.0], [0.0, 1.0, -20.0], [0.0, 0.0, 1.0]])
    cv2.imwrite(str(tmp_path / "a.png"), big)
    cv2.imwrite(str(tmp_path / "b.png"), cv2.warpPerspective(big, H, (2400, 1600)))
    _open_demo(browser, live_url)
    browser.find_element(By.ID, "file-a").send_keys(str(tmp_path / "a.png"))
    meta = browser.find_element(By.CSS_SELECTOR, "#drop-a .drop-meta")
    _wait(browser, lambda d: meta.text == "1600×1067 (from 2400×1600)")  # the default limit
    Select(browser.find_element(By.ID, "max-side")).select_by_value("1024")
    _wait(browser, lambda d: meta.text == "1024×683 (from 2400×1600)")  # prepared again
    _estimate(browser, tmp_path / "a.png", tmp_path / "b.png", "network")
    result = browser.find_element(By.ID, "result")
    assert result.get_attribute("data-state") == "done"
    assert result.get_attribute("data-image-a") == "1024x683"  # as the server decoded it
    assert result.get_attribute("data-image-b") == "1024x683"


def test_server_errors_are_shown(browser, live_url, tmp_path):
    tiny = np.zeros((8, 8), np.uint8)
    cv2.imwrite(str(tmp_path / "tiny.png"), tiny)
    _open_demo(browser, live_url)
    _estimate(browser, tmp_path / "tiny.png", tmp_path / "tiny.png", "features")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and error.text.startswith("422: image_a")


def test_sample_pair_with_ground_truth(browser, live_url):
    _open_demo(browser, live_url)
    browser.find_element(By.CSS_SELECTOR, '.sample[data-sample="coffee"]').click()
    _wait(browser, lambda d: d.find_element(By.ID, "run").is_enabled())
    browser.find_element(By.CSS_SELECTOR, 'label[for="method-features"]').click()
    browser.find_element(By.ID, "run").click()
    _wait(browser, lambda d: d.find_element(By.ID, "result").get_attribute("data-state") == "done")
    facts = browser.find_element(By.ID, "facts").text
    assert "True corner error" in facts
    assert browser.find_element(By.ID, "outline-truth").get_attribute("points")


@pytest.mark.parametrize(
    ("page", "ready"),
    [
        ("/docs", "return document.querySelectorAll('.opblock').length"),
        ("/redoc", "return document.querySelectorAll('[data-section-id^=\"operation\"]').length"),
    ],
)
def test_docs_render_offline(browser, live_url, page, ready):
    browser.get(live_url + page)
    count = _wait(browser, lambda d: d.execute_script(ready) >= 7 and d.execute_script(ready))
    assert count >= 7
    title = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "h1, h2.title"))
    assert any("homography-service" in t.text for t in title)
    # everything came from this server; ReDoc's bundle links its logo on a CDN, and the page's
    # Content-Security-Policy blocks it before any request leaves (Chrome still lists it)
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource')"
        ".map(e => [e.name, e.responseStatus, e.transferSize])"
    )
    assert any(name.startswith(live_url + "/static/docs/") for name, _, _ in resources)
    blocked = " ".join(
        e["message"]
        for e in browser.get_log("browser")
        if "Content Security Policy" in e["message"]
    )
    for name, status, size in resources:
        if not name.startswith(live_url):
            assert status == 0 and size == 0 and name in blocked, (name, status, size)
