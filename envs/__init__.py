"""Data sources for JEPA pretraining: synthetic moving shapes and real mp4 clips."""
