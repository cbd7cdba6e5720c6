"""QUiLoader stand-in: builds the stand-in widgets from a Qt Designer ``.ui`` file.

``slicer.util.loadUI`` (Slicer's own code) calls ``qt.QUiLoader().load(qfile)``;
this reads the same XML that Qt's QFormBuilder reads: nested ``widget``,
``layout``, ``item``, ``spacer`` and ``property`` elements, items of combo
boxes, and the ``connections`` section (the module's ``mrmlSceneChanged`` ->
``setMRMLScene`` wiring). Classes are looked up in ``qt``, then ``ctk``, then
``slicer`` (where Slicer's designer plugins put the MRML widgets).

Stricter than Qt on purpose, so that a typo in the ``.ui`` file fails a test:
an unknown widget class, a standard property (``stdset`` not 0) that the class
does not declare, and a connection to an undeclared signal or a missing slot
raise. ``stdset="0"`` properties are dynamic (``SlicerParameterName``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ._widgets import QLayout, QSpacerItem, QWidget


def _resolve_class(name):
    import ctk

    import qt
    import slicer

    for ns in (qt, ctk, slicer):
        cls = getattr(ns, name, None)
        if isinstance(cls, type):
            return cls
    raise RuntimeError(f".ui file: no stand-in for widget class {name!r}")


def _enum(text):
    """``QAbstractItemView::NoEditTriggers`` -> the class attribute; ``A::x|A::y`` -> or-ed ints."""
    import ctk

    import qt

    values = []
    for part in text.split("|"):
        owner, _, member = part.strip().partition("::")
        holder = getattr(qt, owner, None) or getattr(ctk, owner, None)
        values.append(getattr(holder, member, part.strip()) if holder is not None else part.strip())
    if len(values) == 1:
        return values[0]
    out = 0
    for v in values:
        out |= v if isinstance(v, int) else 0
    return out


def _value(prop):
    child = list(prop)[0]
    tag, text = child.tag, child.text or ""
    if tag == "string":
        return text
    if tag == "bool":
        return text.strip() == "true"
    if tag == "number":
        return int(text)
    if tag == "double":
        return float(text)
    if tag == "stringlist":
        return [s.text or "" for s in child.findall("string")]
    if tag in ("enum", "set"):
        return _enum(text)
    if tag in ("size", "rect"):
        return {c.tag: int(c.text) for c in child}
    return text


class QUiLoader:
    def load(self, qfile, parent=None):
        root = ET.fromstring(qfile.readAll())
        top = root.find("widget")
        widget = self._widget(top, parent)
        for c in root.findall("connections/connection"):
            self._connect(widget, c)
        return widget

    def _widget(self, elem, parent):
        cls = _resolve_class(elem.get("class"))
        w = cls(parent) if parent is not None else cls()
        w.objectName = elem.get("name", "")
        for prop in elem.findall("property"):
            self._set(w, prop)
        items = [i for i in elem.findall("item")]
        for item in items:  # combo box items
            text = item.find("property/string")
            w.addItem(text.text if text is not None and text.text else "")
        for child in elem:
            if child.tag == "layout":
                layout = self._layout(child, None)
                w.setLayout(layout)
                self._fill(layout, child)
            elif child.tag == "widget":
                self._widget(child, w)
        return w

    def _layout(self, elem, parent):
        cls = _resolve_class(elem.get("class"))
        layout = cls()
        layout.objectName = elem.get("name", "")
        return layout

    def _fill(self, layout, elem):
        for item in elem.findall("item"):
            for child in item:
                if child.tag == "widget":
                    owner = layout._owner()
                    w = self._widget(child, owner)
                    layout.addWidget(w)
                elif child.tag == "layout":
                    sub = self._layout(child, layout)
                    layout.addLayout(sub)
                    self._fill(sub, child)
                elif child.tag == "spacer":
                    layout.addItem(QSpacerItem())

    def _set(self, w, prop):
        name = prop.get("name")
        value = _value(prop)
        if prop.get("stdset") == "0":
            w.setProperty(name, value)
            return
        if name not in type(w).declaredProperties():
            raise RuntimeError(f".ui file: {type(w).__name__} {w.objectName!r} has no property {name!r}")
        setattr(w, name, value)

    def _connect(self, top, c):
        def find(name):
            if top.objectName == name:
                return top
            found = top.findChildren(QWidget, name) + top.findChildren(QLayout, name)
            if not found:
                raise RuntimeError(f".ui connection: no object named {name!r}")
            return found[0]

        sender, receiver = find(c.findtext("sender")), find(c.findtext("receiver"))
        slot_name = c.findtext("slot").split("(")[0]
        slot = getattr(receiver, slot_name, None)
        if slot is None:
            raise RuntimeError(f".ui connection: {type(receiver).__name__} has no slot {c.findtext('slot')}")
        sender.connect(c.findtext("signal"), slot)
