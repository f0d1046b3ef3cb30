"""Python-backend models copied into the Triton repository as ``<model>/1/model.py`` (self-contained)."""
