"""Passage's settings, plus the baseline views of bench/baseline.py at /bench/."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
