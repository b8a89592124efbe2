"""What every live control of the notebooks shares: a refresh slider, a live toggle,
a status line, and one refresh loop per kernel.

It follows the ipywidgets rules for a Jupyter kernel: displayed from the main thread,
refreshed by an asyncio task on the kernel's own event loop (no thread writes to a
widget). A refresh that fails shows its error in the status line and the loop goes
on. Starting one live control stops the one started before it: re-running a cell
would otherwise leave the old loop querying forever.
"""

from __future__ import annotations

import asyncio
from typing import Any


class LiveControl:
    """Subclasses build their widgets, then call :meth:`_controls`, and define
    :meth:`redraw` (one refresh) and, if they want, :meth:`before_redraw`."""

    _active: LiveControl | None = None

    def _controls(self, refresh_s: float) -> Any:
        import ipywidgets as widgets

        wide = {"description_width": "initial"}  # labels in full, never "refresh (…"
        self.refresh = widgets.FloatSlider(
            value=refresh_s, min=1.0, max=60.0, step=1.0, description="refresh (s)", style=wide
        )
        self.running = widgets.ToggleButton(value=False, description="live", icon="play")
        self.status = widgets.Label()
        self._task: asyncio.Task | None = None
        self.running.observe(self._toggled, names="value")
        return self.refresh, self.running

    def redraw(self) -> None:
        raise NotImplementedError

    def before_redraw(self) -> None:
        """What a live refresh does before each redraw (nothing by default)."""

    async def _loop(self) -> None:
        while self.running.value:
            try:
                self.before_redraw()
                self.redraw()
            except Exception as error:  # keep the loop alive: show the problem instead
                self.status.value = f"refresh failed: {error}"
            await asyncio.sleep(self.refresh.value)

    def _take_the_kernel(self) -> None:
        previous = LiveControl._active
        if previous is not None and previous is not self:
            previous.stop()
        LiveControl._active = self

    def _toggled(self, change: dict) -> None:
        self.running.icon = "stop" if change["new"] else "play"
        if change["new"]:
            self._take_the_kernel()
            if self._task is None or self._task.done():
                self._task = asyncio.get_event_loop().create_task(self._loop())

    @property
    def looping(self) -> bool:
        """True while this control's refresh task runs."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self.running.value = True

    def stop(self) -> None:
        self.running.value = False

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._take_the_kernel()  # the cell was run again: one loop per kernel
        self.before_redraw()
        self.redraw()
        display(self.widget)
