"""The panel's "Compute on: this computer / server" fields, driven headlessly.

The widget is MedDIFT.py's own, built from the real ``.ui`` by Slicer's ``loadUI``; the server is
a real ``meddift serve`` process on 127.0.0.1 (TLS with a throwaway CA, a token: never
``--no-auth``), the scene a real MRML scene. Stand-ins: the Qt widgets and event loop, and
``slicer.app.settings()`` (an in-memory QSettings, see Testing/SlicerStandIn/README.md), which is
what the token rule is checked against.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import slicer_standin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))  # the server tests' helpers

REPO = Path(__file__).resolve().parents[3]
MODULE_FILE = REPO / "MedDIFT" / "MedDIFT.py"

TOKEN_KEY = "MedDIFT/ServerToken"
UI_FILE = REPO / "MedDIFT" / "Resources" / "UI" / "MedDIFT.ui"


def test_the_ui_has_every_widget_the_code_names():
    """Every ``ui.<name>`` of the module's widget code is a widget of the .ui file, and the Compute-on
    fields are where and what the code expects (a typo would only show in Slicer, as an AttributeError)."""
    root = ET.parse(UI_FILE).getroot()
    widgets = {w.get("name"): w for w in root.iter("widget")}
    code = [MODULE_FILE] + sorted((REPO / "MedDIFT" / "MedDIFTWidgetLib").glob("*.py"))
    used = {m for path in code for m in re.findall(r"\bui\.(\w+)", path.read_text(encoding="utf-8"))}
    from MedDIFTWidgetLib.compute import SERVER_FIELDS

    used |= set(SERVER_FIELDS)  # named as strings there
    assert {"computeOnComboBox", "serverTokenLineEdit", "rememberTokenCheckBox"} <= used
    assert sorted(used - set(widgets)) == []
    advanced = {w.get("name") for w in widgets["advancedCollapsibleButton"].iter("widget")}
    expected = {
        "computeOnComboBox": "QComboBox",
        "serverUrlLineEdit": "QLineEdit",
        "serverTokenLineEdit": "QLineEdit",
        "serverCaFilePathLineEdit": "ctkPathLineEdit",
        "rememberTokenCheckBox": "QCheckBox",
    }
    for name, cls in expected.items():
        assert widgets[name].get("class") == cls and name in advanced, name
    items = [i.findtext("property/string") for i in widgets["computeOnComboBox"].findall("item")]
    from MedDIFTWidgetLib.compute import WHERE

    assert items == ["this computer", "server"] and WHERE == ("local", "server")
    echo = {p.get("name"): p.findtext("enum") for p in widgets["serverTokenLineEdit"].findall("property")}
    assert echo.get("echoMode") == "QLineEdit::Password"


def _load_widget():
    module = slicer_standin.loadModule(str(MODULE_FILE))
    representation = module.widgetRepresentation()
    representation.enter()
    return representation.self()


def test_the_token_is_written_to_the_settings_only_when_remember_is_ticked(slicer_app):
    import qt

    settings = slicer_app.app.settings()
    settings.setValue("MedDIFT/ComputeOn", "server")  # what an earlier Slicer session left
    settings.setValue("MedDIFT/ServerURL", "https://gpu-box:8765")
    w = _load_widget()
    ui = w.ui
    assert (ui.computeOnComboBox.currentText, ui.serverUrlLineEdit.text, ui.serverTokenLineEdit.text) == (
        "server",
        "https://gpu-box:8765",
        "",
    )
    assert ui.serverTokenLineEdit.echoMode == qt.QLineEdit.Password and ui.serverUrlLineEdit.enabled
    token = "s3cret-token-0123456789-abcdef"
    ui.serverTokenLineEdit.text = token
    assert settings.value(TOKEN_KEY) is None and token not in repr(qt.QSettings._store)  # session only
    assert w.computeSettings.token == token  # ... but kept in the panel
    ui.rememberTokenCheckBox.checked = True
    assert settings.value(TOKEN_KEY) == token
    ui.rememberTokenCheckBox.checked = False  # unticking forgets the stored one
    assert settings.value(TOKEN_KEY) is None and token not in repr(qt.QSettings._store)
    ui.serverUrlLineEdit.text = "https://other-gpu:9000"
    assert settings.value("MedDIFT/ServerURL") == "https://other-gpu:9000"  # saved on change
    ui.computeOnComboBox.currentIndex = 0
    assert settings.value("MedDIFT/ComputeOn") == "local"
    assert not any(
        getattr(ui, n).enabled
        for n in ("serverUrlLineEdit", "serverTokenLineEdit", "serverCaFilePathLineEdit", "rememberTokenCheckBox")
    )
    ui.computeOnComboBox.currentIndex = 1
    assert ui.serverTokenLineEdit.enabled
    # a new Slicer session (the module loaded again over the same settings): the URL is back, the token not
    slicer_app.app.moduleManager().unloadModules()
    w2 = _load_widget()
    assert (w2.ui.serverUrlLineEdit.text, w2.ui.serverTokenLineEdit.text) == ("https://other-gpu:9000", "")
    w2.ui.serverTokenLineEdit.text = token
    w2.ui.rememberTokenCheckBox.checked = True
    slicer_app.app.moduleManager().unloadModules()
    assert _load_widget().ui.serverTokenLineEdit.text == token  # remembered: filled in again


def _phantom_scene(slicer, n=5, seed=5):
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups

    pair = make_pair(shape=(64, 64, 64), spacing=(3.5, 3.5, 3.5), seed=seed)
    fixed = add_volume_node(slicer.mrmlScene, pair.fixed, "fixed")
    moving = add_volume_node(slicer.mrmlScene, pair.moving, "moving")
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "landmarks")
    write_markups(points, sample_landmarks(pair, n=n, seed=seed), locked=False)
    ui = slicer.modules.meddift.widgetRepresentation().self().ui
    ui.fixedVolumeSelector.setCurrentNode(fixed)
    ui.movingVolumeSelector.setCurrentNode(moving)
    ui.fixedLandmarksSelector.setCurrentNode(points)
    ui.backboneComboBox.setCurrentText("mind-ssc")
    ui.deviceComboBox.setCurrentText("cpu")
    return pair, points


def _choose_server(ui, url, token, ca=""):
    ui.computeOnComboBox.setCurrentText("server")
    ui.serverUrlLineEdit.text = url
    ui.serverTokenLineEdit.text = token
    ui.serverCaFilePathLineEdit.currentPath = ca


def _apply_and_wait(w, timeout=300):
    w.ui.applyButton.click()
    assert slicer_standin.runEventLoop(lambda: w.job is None, timeout=timeout), "the job did not finish"


def _positions(node):
    return np.array([node.GetNthControlPointPositionWorld(i) for i in range(node.GetNumberOfControlPoints())])


class _errors:
    """The texts given to Slicer's errorDisplay (in testing mode it only logs them)."""

    def __enter__(self):
        import slicer

        self.texts, self._orig = [], slicer.util.errorDisplay
        slicer.util.errorDisplay = lambda text, *a, **k: self.texts.append(text)
        return self

    def __exit__(self, *exc):
        import slicer

        slicer.util.errorDisplay = self._orig
        return False


def test_a_bad_url_or_a_missing_token_is_said_in_the_panel_before_any_job(module_widget, no_weights, tmp_path):
    import slicer

    w = module_widget
    _phantom_scene(slicer)
    count = slicer.mrmlScene.GetNumberOfNodes()
    for url, token, ca, words in (
        ("gpu-box:8765", "t" * 24, "", "must start with https://"),
        ("https://", "t" * 24, "", "must be only the server's address"),
        ("https://gpu-box:port", "t" * 24, "", "not a valid address"),
        ("https://gpu-box:8765", "  ", "", "needs the server's token"),
        ("https://gpu-box:8765", "t" * 24, str(tmp_path / "no-ca.pem"), "CA file"),
    ):
        _choose_server(w.ui, url, token, ca)
        with _errors() as shown:
            w.ui.applyButton.click()
        assert w.job is None and w.logic.client is None, url  # nothing started, no connection tried
        assert words in w.ui.statusLabel.text and words in shown.texts[0], (url, w.ui.statusLabel.text)
        assert w.ui.applyButton.text == "Apply" and slicer.mrmlScene.GetNumberOfNodes() == count


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")
    from server_helpers import ServerProcess, make_tls, make_tokens

    folder = tmp_path_factory.mktemp("panel_server")
    token_file, tokens = make_tokens(folder, 1)
    tls = make_tls(folder / "tls")
    server = ServerProcess(folder, "--token-file", token_file, tls=tls)
    yield server, tokens[0], tls["ca"]
    server.kill()


def test_server_chosen_in_the_panel_gives_the_local_fiducials_and_live_click(module_widget, no_weights, tls_server):
    import slicer

    server, token, ca = tls_server
    w = module_widget
    ui, p = w.ui, w._parameterNode
    pair, points = _phantom_scene(slicer)
    ui.searchRadiusSpinBox.value = 20.0
    ui.denseRefineCheckBox.checked = False  # point matches compared, not a field that may come in between
    _apply_and_wait(w)  # this computer (the default)
    local_node = p.outputLandmarks
    local = _positions(local_node)
    start = _positions(points)[0]
    target = start + np.array([6.0, 0.0, 0.0])
    ui.liveModeCheckBox.checked = True
    points.SetNthControlPointPositionWorld(0, *target)
    assert slicer_standin.runEventLoop(lambda: not w.liveTimer.active, timeout=60)  # the click's answer, when it comes
    local_click = _positions(local_node)[0]
    ui.liveModeCheckBox.checked = False
    points.SetNthControlPointPositionWorld(0, *start)

    _choose_server(ui, server.url, token, ca)
    p.outputLandmarks = None  # a new list for the server's matches
    progress = []
    ui.progressBar.connect("valueChanged(int)", progress.append)
    _apply_and_wait(w)
    # the whole job's progress, as on this computer: never backwards, to the end
    assert progress and progress[-1] == 100 and progress == sorted(progress) and len(set(progress)) > 3
    log = ui.logTextEdit.toPlainText()
    assert f"Compute on: server {server.url}" in log and "Failed" not in log, log
    from MedDIFTLib.service.remote_client import RemoteClient

    assert isinstance(w.logic.client, RemoteClient) and w.logic.client.alive  # with the panel's wording
    remote_node = p.outputLandmarks
    assert remote_node is not local_node and remote_node.GetNumberOfControlPoints() == len(local)
    assert [remote_node.GetNthControlPointLabel(i) for i in range(len(local))] == [
        local_node.GetNthControlPointLabel(i) for i in range(len(local))
    ]
    np.testing.assert_allclose(_positions(remote_node), local, atol=1e-4)  # the same fiducials
    truth = pair.true_moving_points(_positions(points))
    assert np.median(np.linalg.norm(_positions(remote_node) - truth, axis=1)) < np.median(
        np.linalg.norm(_positions(points) - truth, axis=1)
    )
    ui.liveModeCheckBox.checked = True  # the click, through the server
    points.SetNthControlPointPositionWorld(0, *target)
    assert slicer_standin.runEventLoop(lambda: not w.liveTimer.active, timeout=60)  # the click's answer, when it comes
    np.testing.assert_allclose(_positions(remote_node)[0], local_click, atol=1e-4)
    assert server.log().count("POST /v1/sessions/") >= 1
    assert token not in server.log() and token not in log


def test_cancel_and_a_server_stopped_mid_job_leave_the_scene_as_it_was(module_widget, no_weights, tmp_path):
    pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")
    from server_helpers import ServerProcess, make_tokens

    import slicer

    token_file, tokens = make_tokens(tmp_path, 1)
    server = ServerProcess(tmp_path, "--token-file", token_file)
    try:
        w = module_widget
        _phantom_scene(slicer, n=80, seed=6)  # a global search of 80 points: seconds, time to stop the server
        _choose_server(w.ui, server.url, tokens[0])
        before = sorted(slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes()))
        w.ui.applyButton.click()
        slicer_standin.runEventLoop(lambda: w.job is None or w.job.stage.startswith("match"), timeout=180)
        assert w.job is not None and w.job.stage.startswith("match"), w.ui.logTextEdit.toPlainText()
        w.ui.applyButton.click()  # Cancel, mid-match
        assert w.job is None and "Cancelled" in w.ui.logTextEdit.toPlainText()
        from server_helpers import wait_until

        wait_until(lambda: "DELETE /v1/sessions/" in server.log(), timeout=30)  # its server session closed
        with _errors() as shown:
            w.ui.applyButton.click()
            slicer_standin.runEventLoop(lambda: w.job is None or w.job.stage.startswith("match"), timeout=180)
            assert w.job is not None and w.job.stage.startswith("match"), w.ui.logTextEdit.toPlainText()
            server.kill()  # stopped in the middle of the match
            assert slicer_standin.runEventLoop(lambda: w.job is None, timeout=60)
        after = sorted(slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes()))
        assert after == before and slicer.mrmlScene.GetFirstNodeByName("MedDIFT matched") is None
        status = w.ui.statusLabel.text
        assert status.startswith("Failed: the MedDIFT server at") and "stopped" in status, status
        assert "stopped" in shown.texts[0] and "nothing was changed" in shown.texts[0]
        assert w.ui.applyButton.text == "Apply" and w.lastJob is None
    finally:
        server.kill()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765", "https://gpu-box:8765"]
)
def test_plain_http_is_accepted_for_a_server_on_this_computer(url):
    from MedDIFTSceneLib.remote import ComputeSettings

    ComputeSettings(where="server", url=url, token="t" * 24).check()  # no error


def test_plain_http_to_another_computer_is_refused_in_the_panel(module_widget, no_weights):
    import slicer

    w = module_widget
    _phantom_scene(slicer)
    for url in ("http://gpu-box:8765", "http://10.0.0.7:8765", "http://127.0.0.1.example.org:8765"):
        _choose_server(w.ui, url, "t" * 24)
        with _errors() as shown:
            w.ui.applyButton.click()
        assert w.job is None and w.logic.client is None, url  # refused before any connection
        assert "only for a server on this computer" in w.ui.statusLabel.text, w.ui.statusLabel.text
        assert "unencrypted" in shown.texts[0] and "https://" in shown.texts[0]


class _NotMedDIFT:
    """A real HTTP server on 127.0.0.1 that is not MedDIFT: every GET is a 404 page, as a web server's."""

    def __enter__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = b"<html><body>404 Not Found</body></html>"
                self.send_response(404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        return False


def test_an_address_that_is_not_a_meddift_server_says_so(module_widget, no_weights):
    pytest.importorskip("httpx", reason="the server extra (httpx) is not installed")
    import slicer

    w = module_widget
    _phantom_scene(slicer)
    count = slicer.mrmlScene.GetNumberOfNodes()
    with _NotMedDIFT() as web, _errors() as shown:
        _choose_server(w.ui, web.url, "t" * 24)
        _apply_and_wait(w, timeout=60)
    status = w.ui.statusLabel.text
    assert "is not a MedDIFT server" in status and "Server URL" in status, status
    assert status != "Failed: HTTP 404" and "is not a MedDIFT server" in shown.texts[0]
    assert slicer.mrmlScene.GetNumberOfNodes() == count and w.ui.applyButton.text == "Apply"


def test_a_wrong_token_is_said_in_the_panels_words(module_widget, no_weights, tls_server):
    import slicer

    server, token, ca = tls_server
    w = module_widget
    _phantom_scene(slicer)
    with _errors() as shown:
        _choose_server(w.ui, server.url, "wrong-" + token, ca)
        _apply_and_wait(w, timeout=60)
    status = w.ui.statusLabel.text
    assert "refused the token" in status and "Advanced > Token" in status, status
    assert "--token-file" not in shown.texts[0] and "MEDDIFT_TOKEN" not in shown.texts[0]


def test_server_messages_lose_their_command_line_advice():
    from MedDIFTSceneLib.remote_panel import panel_words

    url = "https://gpu-box:8765"
    tls = panel_words(
        "cannot verify the certificate of the MedDIFT server at x (e); for a self-signed server give "
        "its CA file (--ca-file)",
        "TLSError",
        url,
    )
    assert tls.endswith("choose its CA certificate in Advanced > CA file") and "--" not in tls
    limit = panel_words(
        "the server already has 4 open sessions, its limit (--max-sessions 4); close one or try later",
        "LimitExceeded",
        url,
    )
    assert "--max-sessions" not in limit and "a limit set by whoever runs the server" in limit
    assert "not a MedDIFT server" in panel_words("HTTP 404", "HTTP404", url)
