"""The notebooks as a learner uses them: JupyterLab in a real (headless) browser.

JupyterLab is started on 127.0.0.1 with a copy of notebook 01; Debian's Chromium, driven by
Selenium through Debian's ``chromedriver`` (never a browser or driver downloaded by Selenium),
runs all its cells at the smoke preset, checks that none errored, moves a slider of the
degradation panel and checks that the panel's image changed. A second test opens the HTML report
of a pipeline run and checks that every image on it loads. Every wait is on a condition.

Without Chromium the tests are not run, and ``run.py test`` says so in one line; under ``CI=true``
a missing browser fails them.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSER = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = Path(BROWSER).exists() and Path(DRIVER).exists()
WHY_NOT = "no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"

if not HAVE_BROWSER:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test: {WHY_NOT}, and CI=true requires it", pytrace=False)
    pytest.skip(f"NOT RUN: browser test ({WHY_NOT})", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # paths given: nothing fetched
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free port of 127.0.0.1, serving a copy of notebook 01 (the committed one
    is never saved over), its kernels at the smoke preset; ``(url, token, folder)``."""
    folder = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "01_degradation_synthesis.ipynb", folder)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, ASBSR_PRESET="smoke", ASBSR_RUN_DIR=str(folder / "runs"),
               JUPYTER_CONFIG_DIR=str(folder / "config"), JUPYTER_RUNTIME_DIR=str(folder / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(folder / "workspaces"))
    env.pop("MPLBACKEND", None)  # the notebook's own (inline) backend, as a learner has it
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        env=env, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def read():
        for line in server.stderr:
            lines.put(line)
        lines.put(None)  # the server closed its log: it exited

    threading.Thread(target=read, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    log = []
    while True:  # the server announces where it listens: wait for that line, not for a time
        line = lines.get(timeout=300)
        assert line is not None, "JupyterLab exited:\n" + "".join(log)
        log.append(line)
        if f"127.0.0.1:{port}/lab" in line:
            break
    yield url, token, folder
    server.terminate()
    server.wait(timeout=60)


def js(driver, code: str):
    return driver.execute_script(code)


NOTEBOOK = "const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"


def test_notebook_01_runs_in_jupyterlab_and_its_panel_reacts(lab, browser, tmp_path):
    url, token, _ = lab
    browser.get(f"{url}/lab/tree/01_degradation_synthesis.ipynb?token={token}")
    wait = WebDriverWait(browser, 600)
    wait.until(lambda d: js(d, NOTEBOOK + " return !!(w && w.sessionContext && w.sessionContext.session"
                               " && w.sessionContext.session.kernel"
                               " && w.sessionContext.session.kernel.status === 'idle');"))
    js(browser, "window.jupyterapp.commands.execute('notebook:run-all-cells');")
    done = (NOTEBOOK + " const cells = w.content.widgets.filter(c => c.model.type === 'code');"
            " return cells.length > 0 && cells.every(c => c.model.executionCount !== null)"
            " && w.sessionContext.session.kernel.status === 'idle';")
    wait.until(lambda d: js(d, done))
    errors = js(browser, NOTEBOOK + " return w.content.widgets.filter(c => c.model.type === 'code')"
                                    ".flatMap(c => c.model.outputs.toJSON())"
                                    ".filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue);")
    assert errors == []
    panel = "return Array.from(document.querySelectorAll('.widget-output img')).map(i => i.src);"
    wait.until(lambda d: len(js(d, panel)) == 1)
    before = js(browser, panel)[0]
    handle = browser.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle")  # λ1, the first slider
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT * 5)
    wait.until(lambda d: (js(d, panel) or [before])[0] != before)
    browser.save_screenshot(str(tmp_path / "notebook01.png"))
    assert (tmp_path / "notebook01.png").stat().st_size > 10_000


def test_the_report_of_a_run_opens_and_every_image_loads(browser, tmp_path):
    import nbformat

    from asbsr.lab.pipeline import run_pipeline

    books = tmp_path / "books"
    books.mkdir()
    picture = ("import io\nfrom IPython.display import Image, display\nfrom PIL import Image as P\n"
               "b = io.BytesIO()\nP.new('RGB', (40, 30), 'teal').save(b, 'png')\ndisplay(Image(b.getvalue()))")
    cells = [nbformat.v4.new_code_cell("PRESET = None\nRUN_DIR = None\nTRAIN = None",
                                       metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell(picture)]
    book = nbformat.v4.new_notebook(cells=cells)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, books / "01_picture.ipynb")
    assert run_pipeline("smoke", tmp_path / "run", notebooks=books) == 0
    browser.get((tmp_path / "run" / "report.html").as_uri())
    link = browser.find_element(By.LINK_TEXT, "01_picture")
    link.click()
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: js(d, "return document.readyState === 'complete' && document.images.length > 0;"))
    assert js(browser, "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0);")
