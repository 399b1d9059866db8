"""aigateway: an AI API gateway with per-client keys, limits and live usage."""

__version__ = "0.1.0"
