"""Waluigi-Effect detectors: embedder, protocol, registry, one module per detector, the combined
verdict and the service the app, the terminal chat and the eval command use.

Importing this package is cheap (no torch): the embedding model loads on first use, in the
caller's worker thread. See docs/detectors.md."""

from waluigi_desk.core.detectors.base import (  # noqa: F401
    CATEGORIES,
    CombinedVerdict,
    Context,
    Detector,
    Verdict,
)
