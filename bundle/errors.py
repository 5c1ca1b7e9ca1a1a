"""The one error the host-side tools report: what cannot work, and why (render.RenderError)."""


class RenderError(Exception):
    """A hardware/preset pair, a make variable or preset data that cannot work, with the reason."""
