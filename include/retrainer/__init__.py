"""Retrainer: keep production models current as their data drifts.

Importing this package does nothing but define names: no folders, no tracking URI, no logging set-up.
"""

__version__ = "0.1.0"
