"""Report building blocks: gold-data scoring (evaluate), plots, and rendering (Markdown, HTML, JSON).

The ``nerkd report`` stage that strings them together is :mod:`nerkd.stages.report`.
"""
