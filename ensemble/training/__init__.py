"""Training loops; each module defines ``register(subparsers)`` for `python -m ensemble train <what>`."""
