"""The extension's description and the README's Slicer commands, checked against what they name.

Defect 1: the extension index's checker downloads every screenshot and icon URL
of the top-level CMakeLists.txt; a URL into this repository must name a file
that exists. Defect 2: the README's build must not be an in-source build (it
would overwrite the project's own Makefile). Defect 4: the README's self-test
command must work without a main window; its Python code is run here in the
headless Slicer, where ``slicer.util.mainWindow()`` is None as under
``--no-main-window``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RAW_PREFIX = re.compile(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(.+)")


def _cmake_set(name: str) -> list[str]:
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    m = re.search(rf'set\({name}\s+"([^"]*)"\)', text)
    return m.group(1).split() if m else []


def test_every_screenshot_and_icon_url_names_a_file_in_the_repository():
    urls = _cmake_set("EXTENSION_SCREENSHOTURLS") + _cmake_set("EXTENSION_ICONURL")
    assert urls, "CMakeLists.txt names no icon or screenshot"
    for url in urls:
        m = RAW_PREFIX.match(url)
        assert m, f"{url}: not a raw.githubusercontent.com URL into this repository"
        path = REPO / m.group(1)
        assert path.is_file(), f"{url} -> {path.relative_to(REPO)} does not exist (the index checker gets a 404)"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"


def _readme_commands(pattern: str) -> list[str]:
    return re.findall(pattern, (REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_build_is_out_of_source():
    builds = _readme_commands(r"`(cmake [^`]*)`")
    assert builds, "the README describes no cmake build"
    for cmd in builds:
        args = shlex.split(cmd.split("&&")[0])
        source_dirs = [a for a in args[1:] if not a.startswith("-")]
        build_dir = [args[i + 1] for i, a in enumerate(args) if a == "-B" and i + 1 < len(args)]
        assert "." not in source_dirs or build_dir, f"in-source build in the README: {cmd}"
        assert build_dir or any(a.startswith("-S") for a in args), f"say where the build goes (-S/-B): {cmd}"


def _readme_self_test_code() -> str:
    cmds = [c for c in _readme_commands(r"`(Slicer [^`]*--testing[^`]*)`")]
    assert cmds, "the README gives no Slicer --testing command"
    args = shlex.split(cmds[0])
    assert "--no-main-window" in args
    return args[args.index("--python-code") + 1], args


def test_readme_self_test_command_runs_without_a_main_window(slicer_app, monkeypatch):
    """The command's own Python, run as Slicer would run it after loading the module from
    ``--additional-module-paths``; the self-test itself is replaced by a recorder here
    (the real one runs in test_module_selftest.py)."""
    import slicer_standin

    code, args = _readme_self_test_code()
    assert "--additional-module-paths" in args, "name the module folder: a fresh Slicer does not know MedDIFT"
    folder = Path(args[args.index("--additional-module-paths") + 1])
    assert folder.name == "MedDIFT"
    slicer_standin.loadModule(str(REPO / "MedDIFT" / "MedDIFT.py"))
    ran = []
    monkeypatch.setitem(slicer_app.selfTests, "MedDIFT", lambda *a, **k: ran.append(True))
    exec(code, {"__name__": "__main__"})
    assert ran == [True]
    assert slicer_app.app.exitCode == 0


def test_the_old_selectModule_command_fails_without_a_main_window(slicer_app):
    """Why defect 4 was one: Slicer's util.selectModule needs the main window's module selector."""
    with pytest.raises(RuntimeError, match="main window"):
        slicer_app.util.selectModule("MedDIFT")


def test_every_module_python_file_is_installed():
    """MedDIFT/CMakeLists.txt lists the module's scripts one by one: a file left out is missing from the
    extension package and fails only in an installed Slicer ("No module named ...")."""
    text = (REPO / "MedDIFT" / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+(MedDIFT\w*Lib/\w+\.py)\s*$", text, flags=re.M))
    present = {
        str(p.relative_to(REPO / "MedDIFT")).replace("\\", "/")
        for folder in ("MedDIFTSceneLib", "MedDIFTWidgetLib")
        for p in (REPO / "MedDIFT" / folder).glob("*.py")
    }
    assert sorted(present - listed) == []


# --- the Extensions Index entry and the module's own description -----------------------------------

INDEX_ENTRY = REPO / "Resources" / "ExtensionsIndex" / "MedDIFT.json"
SCHEMA = Path(__file__).resolve().parent / "index_schema" / "slicer-extension-catalog-entry-schema-v1.0.2.json"


def test_index_entry_is_formatted_as_the_index_requires():
    """The index's pre-commit runs prettier with prettier-plugin-multiline-arrays at wrap threshold 0:
    every non-empty array one item per line, two-space indent, LF endings, a final newline; its
    checker refuses CR line endings. ``json.dumps(indent=2)`` writes exactly that layout."""
    raw = INDEX_ENTRY.read_bytes()
    assert b"\r" not in raw and b"\t" not in raw
    text = raw.decode("utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert all(line == line.rstrip() for line in text.splitlines())


def test_index_entry_validates_against_slicers_schema_and_matches_the_cmake_description():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    entry = json.loads(INDEX_ENTRY.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert entry["$schema"].split("#")[0] == schema["$id"].split("#")[0]
    jsonschema.validate(entry, schema)
    # the index checker's own rules: the file name is the CMake project, the repository starts with
    # "Slicer" (the extension does not), the category is one it knows ("Registration" is), a licence file
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", text, re.IGNORECASE)[0] == INDEX_ENTRY.stem == "MedDIFT"
    assert entry["scm_url"].rstrip("/").split("/")[-1].removesuffix(".git").startswith("Slicer")
    assert entry["category"] == _cmake_set("EXTENSION_CATEGORY")[0] == "Registration"
    assert entry["build_dependencies"] == _cmake_set("EXTENSION_DEPENDS")
    assert (REPO / "LICENSE").is_file()


def test_module_description_translates_its_category_and_names_its_sources(slicer_app, monkeypatch):
    """Slicer translates module categories in the context ``qSlicerAbstractCoreModule`` (its own
    modules' categories live there); the help text links the documentation; the acknowledgement names
    the descriptor, the method's sources and their licences; the contributors are the CMake ones."""
    import slicer_standin

    asked = []
    monkeypatch.setattr(slicer_app.app, "translate", lambda context, text: asked.append((context, text)) or text)
    parent = slicer_standin.loadModule(str(REPO / "MedDIFT" / "MedDIFT.py"))
    assert ("qSlicerAbstractCoreModule", "Registration") in asked
    assert list(parent.categories) == ["Registration"]
    assert list(parent.contributors) == [" ".join(_cmake_set("EXTENSION_CONTRIBUTORS"))]
    link = re.search(r'<a href="([^"]+)">', parent.helpText)
    assert link, parent.helpText
    url, _, anchor = link.group(1).partition("#")
    assert url == _cmake_set("EXTENSION_HOMEPAGE")[0].split("#")[0] and anchor
    headings = [
        re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", (REPO / "README.md").read_text(encoding="utf-8"), re.M)
    ]
    assert anchor in headings, (anchor, headings)
    ack = parent.acknowledgementText
    for words in (
        "MIND-SSC",
        "Heinrich",
        "ConvexAdam",
        "MONAI",
        "MAISI",
        "Apache License 2.0",
        "licence",
        "2512.05571",
    ):
        assert words in ack, words


def test_readme_is_a_homepage_for_the_extension():
    """The index shows the README as the extension's homepage: a picture of the module (a file in
    this repository), the licence, the paper to cite, and the install from the Extensions Manager."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", text)
    assert images and all((REPO / i).is_file() for i in images), images
    assert any("Panel" in i for i in images)
    assert re.search(r"\[[^\]]*\]\(LICENSE\)", text) and "Apache License 2.0" in text
    assert "arXiv 2512.05571" in text and ("@article" in text or "@misc" in text)
    assert "Extensions Manager" in text and re.search(r"search for \*\*MedDIFT\*\*", text)
