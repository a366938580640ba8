"""Notebook widgets (anywidget). Front end source: js/ at the repo root; built into static/."""
from vdbnb.widgets.browser_source import BrowserSource
from vdbnb.widgets.panel import CapturePanel, WidgetBundleMissing
from vdbnb.widgets.sources import EventSource, IterableEventSource, PreviewSource, as_event_source

__all__ = ["CapturePanel", "BrowserSource", "WidgetBundleMissing", "PreviewSource", "EventSource", "IterableEventSource",
           "as_event_source"]
