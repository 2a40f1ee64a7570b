"""Waluigi Desk: an offline chat client for local language models with context hygiene."""

__version__ = "0.1.0"
APP_NAME = "waluigi-desk"
