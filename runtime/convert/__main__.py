"""`python -m tessera.runtime.convert`: the same command as the `tessera-convert` console script.

See cli.py for the arguments.
"""
from __future__ import annotations

from tessera.runtime.convert.cli import main

raise SystemExit(main())
