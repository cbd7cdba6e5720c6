"""Qt core stand-in: QObject with PythonQt-style signals and properties, timers, settings.

Why a stand-in: a scripted module's Python talks to Qt only through PythonQt,
and Qt itself (a GUI toolkit with a display) cannot run on a CI machine. This
file reproduces the PythonQt surface the module and Slicer's own Python files
use, following the Qt 5 headers:

- signals are declared with their C++ signatures (``Signal("clicked(bool)",
  "clicked()")``); ``obj.connect("clicked(bool)", fn)`` and
  ``obj.clicked.connect(fn)`` work as in PythonQt, and a slot is called with as
  many of the signal's arguments as it accepts (PythonQt does the same);
- Q_PROPERTYs are Python attributes (``button.text = "Apply"``), a property
  with a NOTIFY signal emits it when its value changes, and ``setText(...)``
  style setters exist for every property, as in Qt;
- ``setProperty``/``property`` keep dynamic properties (``SlicerParameterName``).

Stricter than PythonQt on purpose: connecting to a signal the class does not
declare raises (PythonQt only prints a warning, so the module would silently
never be called). An exception inside a slot is printed and recorded in
``slotErrors`` instead of reaching the emitter, as in PythonQt; the tests'
fixture fails a test that leaves one behind.
"""

from __future__ import annotations

import inspect
import time
import traceback

slotErrors: list[str] = []


def normalize(signature: str) -> str:
    """``currentPathChanged(const QString&)`` -> ``currentPathChanged(QString)`` (Qt's normalisation)."""
    name, _, args = signature.partition("(")
    args = args.rstrip(")")
    parts = [a.replace("const ", "").replace("&", "").replace(" ", "") for a in args.split(",") if a.strip()]
    return f"{name.strip()}({','.join(parts)})"


def _call_slot(fn, args):
    """Call ``fn`` with as many leading arguments as it accepts, like PythonQt's signal receiver."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return fn(*args)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return fn(*args)
    n = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    return fn(*args[:n])


class Signal:
    """A class-level signal declaration with its overloads; the first one is what ``obj.name`` gives."""

    def __init__(self, *signatures: str):
        self.signatures = tuple(normalize(s) for s in signatures)

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return BoundSignal(obj, self.signatures[0])


class BoundSignal:
    def __init__(self, obj, signature):
        self.obj, self.signature = obj, signature

    def connect(self, fn):
        return self.obj.connect(self.signature, fn)

    def disconnect(self, fn=None):
        return self.obj.disconnect(self.signature, fn)

    def emit(self, *args):
        self.obj.emit(self.signature, *args)


class Prop:
    """A Q_PROPERTY: an attribute with a default, an optional NOTIFY signal and an optional setter hook."""

    def __init__(self, default=None, notify: str | None = None, convert=None):
        self.default, self.notify, self.convert = default, notify, convert

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj.__dict__.get("_prop_" + self.name, self.default)

    def __set__(self, obj, value):
        if self.convert is not None:
            value = self.convert(obj, value)
        old = self.__get__(obj)
        obj.__dict__["_prop_" + self.name] = value
        if self.notify and old != value:
            obj.emit(self.notify, value)


class QObject:
    destroyed = Signal("destroyed()", "destroyed(QObject*)")
    objectName = Prop("")

    def __init__(self, parent=None):
        self._slots: dict[str, list] = {}
        self._dynamic: dict[str, object] = {}
        self._children: list[QObject] = []
        self._parent = None
        if parent is not None:
            self.setParent(parent)

    # --- names and tree ------------------------------------------------------------
    @property
    def name(self):  # PythonQt's alias of objectName, used by slicer.util.childWidgetVariables
        return self.objectName

    @name.setter
    def name(self, value):
        self.objectName = value

    def setObjectName(self, value):
        self.objectName = value

    def parent(self):
        return self._parent

    def setParent(self, parent):
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None and self not in parent._children:
            parent._children.append(self)

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None, name=None):
        out, stack = [], list(self._children)
        while stack:
            c = stack.pop(0)
            if (cls is None or isinstance(c, cls)) and (name is None or c.objectName == name):
                out.append(c)
            stack.extend(c._children)
        return out

    def findChild(self, cls, name=None):
        found = self.findChildren(cls, name)
        return found[0] if found else None

    def className(self):
        return type(self).__name__

    def inherits(self, class_name):
        return any(c.__name__ == class_name for c in type(self).__mro__)

    def isWidgetType(self):
        return False

    def deleteLater(self):
        self.emit("destroyed()")

    # --- properties ------------------------------------------------------------------
    @classmethod
    def declaredProperties(cls) -> set[str]:
        return {k for c in cls.__mro__ for k, v in vars(c).items() if isinstance(v, Prop)}

    @classmethod
    def declaredSignals(cls) -> set[str]:
        return {s for c in cls.__mro__ for v in vars(c).values() if isinstance(v, Signal) for s in v.signatures}

    def setProperty(self, name, value):
        if name in self.declaredProperties():
            setattr(self, name, value)
        else:
            self._dynamic[name] = value
        return True

    def property(self, name):
        if name in self._dynamic:
            return self._dynamic[name]
        if name in self.declaredProperties():
            return getattr(self, name)
        return None

    def __getattr__(self, attr):
        # Qt's setter convention: setText(v) for the property "text"
        if attr.startswith("set") and len(attr) > 3:
            prop = attr[3].lower() + attr[4:]
            if prop in type(self).declaredProperties():
                return lambda value: setattr(self, prop, value)
        raise AttributeError(f"{type(self).__name__!r} (Qt stand-in) has no attribute {attr!r}")

    # --- signals ---------------------------------------------------------------------
    def connect(self, signature, fn):
        sig = normalize(signature)
        if sig not in self.declaredSignals():
            raise ValueError(f"{type(self).__name__} has no signal {sig}; declared: {sorted(self.declaredSignals())}")
        self._slots.setdefault(sig, []).append(fn)
        return True

    def disconnect(self, signature, fn=None):
        slots = self._slots.get(normalize(signature), [])
        if fn is None:
            slots.clear()
            return True
        for i, s in enumerate(slots):
            if s == fn:
                del slots[i]
                return True
        return False

    def blockSignals(self, block):
        """As QObject::blockSignals: returns the previous state."""
        old = self.__dict__.get("_blocked", False)
        self.__dict__["_blocked"] = bool(block)
        return old

    def signalsBlocked(self):
        return self.__dict__.get("_blocked", False)

    def emit(self, signature, *args):
        if self.__dict__.get("_blocked", False):
            return
        for fn in list(self._slots.get(normalize(signature), [])):
            try:
                _call_slot(fn, args)
            except Exception:  # PythonQt prints it; the emitter goes on
                text = traceback.format_exc()
                slotErrors.append(text)
                print(text)

    def receivers(self, signature) -> int:
        return len(self._slots.get(normalize(signature), []))


# --- the event loop: timers only ---------------------------------------------------

_activeTimers: list[QTimer] = []


def processEvents():
    """Run every timer that is due, once (what QCoreApplication::processEvents does for timers)."""
    now = time.monotonic()
    for timer in list(_activeTimers):
        if timer in _activeTimers and timer._due <= now:
            if timer._single:
                _activeTimers.remove(timer)
            else:
                timer._due = now + timer.interval / 1000.0
            timer.emit("timeout()")


class QTimer(QObject):
    timeout = Signal("timeout()")
    interval = Prop(0)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._due, self._single = 0.0, False

    def setSingleShot(self, on):
        self._single = bool(on)

    def isSingleShot(self):
        return self._single

    @property
    def active(self):
        return self in _activeTimers

    def isActive(self):
        return self.active

    def start(self, msec=None):
        if msec is not None:
            self.interval = msec
        self._due = time.monotonic() + self.interval / 1000.0
        if self not in _activeTimers:
            _activeTimers.append(self)

    def stop(self):
        if self in _activeTimers:
            _activeTimers.remove(self)

    @staticmethod
    def singleShot(msec, fn):
        t = QTimer()
        t._single = True
        t.connect("timeout()", fn)
        t.start(msec)
        return t


class QSettings(QObject):
    """In-memory settings shared by every instance of a process (Qt keeps them in a file).

    A value reads back with the type it was stored with, as Qt does within one
    session; after a restart Qt would return INI strings ("true"). ``clearAll()``
    is the tests' reset."""

    _store: dict[str, object] = {}

    def value(self, key, default=None):
        return self._store.get(key, default)

    def setValue(self, key, value):
        self._store[key] = value

    def contains(self, key):
        return key in self._store

    def remove(self, key):
        for k in [k for k in self._store if k == key or k.startswith(key + "/")]:
            del self._store[k]

    def allKeys(self):
        return list(self._store)

    def sync(self):
        pass

    @classmethod
    def clearAll(cls):
        cls._store.clear()


class QFile:
    ReadOnly, WriteOnly, Text = 1, 2, 16

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        import os

        return os.path.isfile(self.path)

    def open(self, mode):
        return self.exists() if mode & self.ReadOnly else True

    def readAll(self):
        with open(self.path, "rb") as f:
            return f.read()

    def close(self):
        pass
