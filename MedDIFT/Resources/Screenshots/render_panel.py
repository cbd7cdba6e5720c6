"""Draw the MedDIFT module panel from ``MedDIFT/Resources/UI/MedDIFT.ui`` into ``MedDIFTPanel.png``.

A schematic, not a screenshot: no Slicer runs where this repository is built. Each widget of the
.ui file is drawn in its place and default state (collapsed sections collapsed, hidden widgets
hidden) with its own text, so the picture changes when the panel does. Run from the repository
root: ``python MedDIFT/Resources/Screenshots/render_panel.py`` (needs matplotlib).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402

HERE = Path(__file__).resolve().parent
UI = HERE.parent / "UI" / "MedDIFT.ui"
WIDTH, ROW, LABEL_W = 100.0, 6.0, 30.0
GREY, DARK, FIELD = "#d9d9d9", "#303030", "#ffffff"


def prop(widget, name, default=""):
    node = widget.find(f"property[@name='{name}']")
    if node is None:
        return default
    for tag in ("string", "bool", "number", "double", "enum", "set"):
        value = node.findtext(tag)
        if value is not None:
            return value
    return default


class Panel:
    def __init__(self, ax):
        self.ax, self.y = ax, 0.0

    def text(self, x, y, s, **kw):
        self.ax.text(x, -y, s, va="center", fontsize=kw.pop("size", 7), color=kw.pop("color", DARK), **kw)

    def box(self, x, y, w, h, face=FIELD, round_=False):
        cls = FancyBboxPatch if round_ else Rectangle
        extra = {"boxstyle": "round,pad=0,rounding_size=1.2"} if round_ else {}
        self.ax.add_patch(cls((x, -y - h / 2), w, h, facecolor=face, edgecolor="#8c8c8c", linewidth=0.6, **extra))

    def field(self, widget, x, w):
        """One widget in a row centred at ``self.y``."""
        cls, y = widget.get("class"), self.y
        if cls == "QCheckBox":
            self.box(x, y, 3, 3)
            if prop(widget, "checked") == "true":
                self.text(x + 0.4, y, "x", size=7)
            self.text(x + 4.5, y, prop(widget, "text"))
        elif cls == "QPushButton":
            self.box(x, y, w, ROW - 1.5, face="#ececec", round_=True)
            self.text(x + w / 2, y, prop(widget, "text"), ha="center")
        elif cls in ("qMRMLNodeComboBox", "QComboBox"):
            self.box(x, y, w, ROW - 1.5)
            first = widget.findtext("item/property/string")
            shown = first if cls == "QComboBox" else prop(widget, "noneDisplay", "None")
            self.text(x + 1.5, y, shown or "", color="#606060")
            self.text(x + w - 3, y, "v", size=6)
        elif cls in ("QSpinBox", "QDoubleSpinBox"):
            self.box(x, y, w * 0.45, ROW - 1.5)
            self.text(x + 1.5, y, f"{prop(widget, 'value', '0')}{prop(widget, 'suffix')}")
        elif cls in ("QLineEdit", "ctkPathLineEdit"):
            self.box(x, y, w - (6 if cls == "ctkPathLineEdit" else 0), ROW - 1.5)
            self.text(x + 1.5, y, prop(widget, "placeholderText"), color="#a0a0a0")
            if cls == "ctkPathLineEdit":
                self.box(x + w - 5, y, 5, ROW - 1.5, face="#ececec")
                self.text(x + w - 2.5, y, "...", ha="center")
        elif cls == "qSlicerMarkupsPlaceWidget":
            self.box(x, y, 10, ROW - 1.5, face="#ececec", round_=True)
            self.text(x + 5, y, "place", ha="center")
        else:
            self.text(x, y, f"[{cls}]", color="#808080")

    def section(self, widget):
        collapsed = prop(widget, "collapsed") == "true"
        self.y += ROW / 2 + 1
        self.box(0, self.y, WIDTH, ROW - 1, face=GREY)
        self.text(2, self.y, (">  " if collapsed else "v  ") + prop(widget, "text"), size=8, weight="bold")
        self.y += ROW / 2
        if not collapsed:
            self.layout(widget.find("layout"), indent=3)

    def layout(self, layout, indent=0.0):
        if layout is None:
            return
        if layout.get("class") == "QFormLayout":
            rows = {}
            for item in layout.findall("item"):
                rows.setdefault(int(item.get("row")), {})[int(item.get("column", 0))] = item.find("widget")
            for r in sorted(rows):
                self.y += ROW / 2
                label, field = rows[r].get(0), rows[r].get(1)
                if label is not None and label.get("class") == "QLabel":
                    self.text(indent, self.y, prop(label, "text"))
                elif label is not None:
                    self.field(label, indent, LABEL_W - 2)
                if field is not None:
                    self.field(field, indent + LABEL_W, WIDTH - LABEL_W - indent - 1)
                self.y += ROW / 2
            return
        if layout.get("class") == "QHBoxLayout":
            widgets = [i.find("widget") for i in layout.findall("item") if i.find("widget") is not None]
            w = (WIDTH - indent) / max(len(widgets), 1)
            self.y += ROW / 2
            for k, widget in enumerate(widgets):
                self.field(widget, indent + k * w, w - 1)
            self.y += ROW / 2
            return
        for item in layout.findall("item"):
            if item.find("layout") is not None:
                self.layout(item.find("layout"), indent)
            elif item.find("widget") is not None:
                self.item(item.find("widget"), indent)

    def item(self, widget, indent):
        cls = widget.get("class")
        if prop(widget, "visible") == "false" or (cls == "QLabel" and not prop(widget, "text")):
            return
        if cls == "ctkCollapsibleButton":
            self.section(widget)
        elif cls == "QTableWidget":
            cols = int(prop(widget, "columnCount", "3"))
            self.y += 1
            for r in range(3):
                self.y += ROW / 2
                for c in range(cols):
                    w = (WIDTH - indent) / cols
                    self.box(indent + c * w, self.y, w, ROW - 1, face=GREY if r == 0 else FIELD)
                self.y += ROW / 2
        elif cls == "QPlainTextEdit":
            self.y += 2 * ROW
            self.box(indent, self.y, WIDTH - indent, 3 * ROW)
            self.y += 2 * ROW
        else:
            self.y += ROW / 2
            self.field(widget, indent, WIDTH - indent - 1)
            self.y += ROW / 2


def render(out: Path) -> Path:
    root = ET.parse(UI).getroot()
    fig, ax = plt.subplots(figsize=(5.2, 9.0), dpi=130)
    panel = Panel(ax)
    panel.layout(root.find("widget/layout"))
    ax.set_xlim(-2, WIDTH + 2)
    ax.set_ylim(-panel.y - 4, 7)
    ax.axis("off")
    ax.text(
        WIDTH / 2,
        4,
        "MedDIFT module panel (drawn from MedDIFT.ui; not a Slicer screenshot)",
        ha="center",
        fontsize=7,
        color="#606060",
    )
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "MedDIFTPanel.png"))
