"""Pieces every report section is built from, below the stage areas: HTML blocks (:mod:`.html`),
plots (:mod:`.plots`), the :class:`~.section.Section` a registry ``report`` hook returns and the
read-only :class:`~.view.RunView` it reads the run through.

Why a package apart from ``textbooklm.report``: each area owns its section (``<area>/report_section.py``)
and areas never import one another; what they share sits here, below them.
"""
