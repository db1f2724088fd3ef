"""Results: one row per request in one schema for every backend, run summaries, and loading many runs."""
from tessera.results.io import RUN_FILES, is_complete_run, load, save_run
from tessera.results.rejections import rejection_summary
from tessera.results.schema import REQUEST_COLUMNS, add_latency_columns, empty_frame
from tessera.results.summary import summarize

__all__ = ["REQUEST_COLUMNS", "RUN_FILES", "add_latency_columns", "empty_frame", "is_complete_run", "load",
           "rejection_summary", "save_run", "summarize"]
