"""Training loops; each module defines ``register(subparsers)`` for `ensemble train <what>`."""
