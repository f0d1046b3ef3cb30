"""Ladder's training pipeline: routing data in the canonical format, importers, and training of the head."""
