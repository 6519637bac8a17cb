"""Moved to evaluation/shapesworld.py (the benchmark code ships with the product); kept so that
`tools.shapesworld` imports keep working."""
from evaluation.shapesworld import *  # noqa: F401,F403
