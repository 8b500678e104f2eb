"""`python -m ensemble ...` entry point."""

from ensemble.cli import main

raise SystemExit(main())
