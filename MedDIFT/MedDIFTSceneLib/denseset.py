"""The background registrations a panel needs: the selected pair's, or each follow-up's pair of a tracking run.

:class:`DenseRegistrations` keeps them in the order they were asked for and runs one at a time (each
is a whole worker process doing a CPU-heavy registration; two at once would only slow both and the
clicks). A pair no longer needed is cancelled (its worker killed); a finished field is looked up by
its pair's key only (both nodes, their voxels, the engine options), so it never serves another pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from MedDIFTLib.errors import InputError

from .densefield import (
    FROM_FIELD,
    PROVISIONAL,
    BackgroundRegistration,
    field_lookup,
    mark_provisional,
    pair_key,
    set_source,
    source_of,
    upgrade_provisional,
)
from .scene import pointset_from_markups, set_partner
from .tracking import clear_verdicts, verdict


class DenseRegistrations:
    """Background registrations by pair; ``poll()`` from a GUI timer.

    Args:
        scene: the MRML scene the pairs' nodes are in.
        client_factory: makes a new, not yet launched worker client (one per registration).
    """

    def __init__(self, scene, client_factory: Callable[[], object]):
        self.scene, self.client_factory = scene, client_factory
        self.items: list[BackgroundRegistration] = []

    @property
    def newest(self) -> BackgroundRegistration | None:
        return self.items[-1] if self.items else None

    def running(self) -> bool:
        return any(not d.done for d in self.items)

    def start(self, fixed_id: str, moving_id: str, engine: dict) -> BackgroundRegistration:
        """The registration of this pair: the one running or done (a failed one is tried again)."""
        d = self.find(fixed_id, moving_id, engine)
        if d is not None and (not d.done or d.ready()):
            return d
        if d is not None:
            self.items.remove(d)
        d = BackgroundRegistration(self.scene, fixed_id, moving_id, engine, self.client_factory())
        self.items.append(d)
        return d

    def find(self, fixed_id: str, moving_id: str, engine: dict) -> BackgroundRegistration | None:
        """The registration of exactly this pair (nodes, voxels, engine options), if any."""
        key = pair_key(self.scene, fixed_id, moving_id, engine)
        return next((d for d in self.items if d.key == key), None)

    def keep_only(self, pairs: Iterable[tuple]) -> list:
        """Cancel and forget every registration whose (fixed ID, moving ID) is not in ``pairs``;
        returns those that were still running."""
        wanted = set(pairs)
        dropped = [d for d in self.items if (d.fixed_id, d.moving_id) not in wanted]
        for d in dropped:
            d.cancel()
        self.items = [d for d in self.items if d not in dropped]
        return [d for d in dropped if d.cancelled]

    def cancel_all(self) -> None:
        self.keep_only(())

    def provisional(self, fixed_id: str, moving_id: str, engine: dict, out_node, fixed_node, labels: list) -> list:
        """Point matches of ``labels`` just put in ``out_node``: marked provisional when the pair is being
        registered (re-placed at once when its field is already there). Returns the labels re-placed."""
        d = self.find(fixed_id, moving_id, engine)
        if d is None or (d.done and not d.ready()):
            return []
        mark_provisional(out_node, labels)
        if (out_node, fixed_node) not in d.targets:
            d.targets.append((out_node, fixed_node))
        if not d.ready():
            return []
        assert d.field is not None  # ready() says so
        return upgrade_provisional(out_node, fixed_node, d.field)

    def poll(self) -> list:
        """Advance the first registration not done (one at a time); returns those that ended now, their
        provisional matches re-placed (``upgraded``: the labels) when the field came."""
        ended = []
        for d in self.items:
            if d.done:
                continue
            if d.poll():
                break
            self._ended(d)
            ended.append(d)
        return ended

    def _ended(self, d: BackgroundRegistration) -> None:
        d.upgraded = []
        for out_node, fixed_node in d.targets:
            if not (self.scene.IsNodePresent(out_node) and self.scene.IsNodePresent(fixed_node)):
                continue
            if d.ready():
                assert d.field is not None  # ready() says so
                d.upgraded += upgrade_provisional(out_node, fixed_node, d.field)
            else:  # failed: no field will come, so the point matches are simply the answer
                labels = pointset_from_markups(fixed_node).labels
                assert labels is not None  # PointSet makes a list
                for label in labels:
                    if source_of(out_node, label) == PROVISIONAL:
                        set_source(out_node, label, None)


def place_from_field(out_node, fixed_node, index: int, field: tuple) -> dict:
    """A click once the pair's field is here: fixed point ``index`` moved through it, into ``out_node``
    (refused for a match the reader accepted or corrected). Returns the label and the new point.

    Args:
        out_node: the matched point list.
        fixed_node: the fixed point list.
        index: the clicked point's index in ``fixed_node``.
        field: (RAS displacement (I, J, K, 3), IJK-to-RAS) of the pair's field.
    """
    ps = pointset_from_markups(fixed_node)
    if not 0 <= index < len(ps) or not ps.defined[index]:
        raise InputError(f"point {index + 1} of the fixed list has no position")
    assert ps.labels is not None  # PointSet makes a list
    label = ps.labels[index]
    said = verdict(out_node, label)
    if said != "proposed":
        raise InputError(
            f"the match of {label!r} was {said} by you and is kept; press Apply to match every landmark again"
        )
    point = field_lookup(ps.points[index], *field)[0]
    if not np.all(np.isfinite(point)):
        raise InputError(f"{label!r} lies outside the fixed volume the field was computed on")
    set_partner(out_node, label, point, {})
    clear_verdicts(out_node, [label])
    set_source(out_node, label, FROM_FIELD)
    return {"label": label, "point": point, "similarity": None}
