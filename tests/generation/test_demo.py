"""The web demo in a real headless browser: upload the photo and a wav, press Generate, get a playable mp4.

Needs the `demo` extra (gradio), selenium, and Debian's chromium + chromium-driver (the Makefile's system-deps
target installs them); the server runs as `moda-demo` does, in its own process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import av
import cv2
import numpy as np
import pytest

from .generation_helpers import speech_like, write_wav

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver (make system-deps)"
    ),
]
SECONDS = 4.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(checkpoint, tmp_path):
    port = _free_port()
    log = open(tmp_path / "demo.log", "w")  # noqa: SIM115 (closed below)
    command = [sys.executable, "-m", "moda_train.demo", "--checkpoint", checkpoint, "--port", str(port)]
    process = subprocess.Popen([*command, "--out", str(tmp_path / "out"), "--steps", "1"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "demo.log").read_text()) from None
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_photo_and_speech_get_a_playable_video(server, browser, photo, tmp_path):
    photo_file = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo_file), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    speech = write_wav(tmp_path / "speech.wav", speech_like(SECONDS))

    browser.get(server)
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "input[type=file]")) >= 2)
    image_input, audio_input = browser.find_elements(By.CSS_SELECTOR, "input[type=file]")[:2]
    assert "image" in image_input.get_attribute("accept") and "audio" in audio_input.get_attribute("accept")
    icons = len(browser.find_elements(By.CSS_SELECTOR, "img[src]"))  # the page's own icons are images too
    image_input.send_keys(str(photo_file))
    audio_input.send_keys(speech)
    # both uploads done: the photo is shown as one more image, the speech as an audio player
    WebDriverWait(browser, 60).until(
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "img[src]")) > icons and d.find_elements(By.TAG_NAME, "audio")
        )
    )
    browser.find_element(By.XPATH, "//button[normalize-space()='Generate']").click()

    video = WebDriverWait(browser, 300, poll_frequency=1).until(
        lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "video[src]")), False)
    )
    # the browser itself decodes it: metadata loaded, the speech's length, the renderer's frame size
    state = WebDriverWait(browser, 60).until(
        lambda d: d.execute_script(
            "const v = document.querySelector('video[src]');"
            "return v.readyState >= 1 ? [v.duration, v.videoWidth, v.videoHeight] : false;"
        )
    )
    assert state[0] == pytest.approx(SECONDS, abs=0.1) and state[1:] == [512, 512]
    downloaded = tmp_path / "downloaded.mp4"
    urllib.request.urlretrieve(video.get_attribute("src"), downloaded)
    with av.open(str(downloaded)) as container:
        assert container.streams.audio, "the video has no audio stream"
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == int(np.ceil(SECONDS * 25))
    assert os.path.getsize(downloaded) > 10_000
