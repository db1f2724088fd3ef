"""Entry point of `python -m tessera.gpu_check` (tessera/gpu_check/cli.py).

See docs/gpu_check.md."""
from tessera.gpu_check.cli import main

raise SystemExit(main())
