"""Frames, training, metrics and performance estimation: plain pandas and scikit-learn."""
