"""textbooklm: textbook-quality data and small phi models (phi-1 / phi-1.5 recipe)."""
__version__ = "0.1.0"
