"""Fixtures for the chart tests; the helpers themselves live in chartlib.py."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from chartlib import CHART_DIR, NAMESPACE, RELEASE, Rendered, parse_manifests


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(str(CHART_DIR)) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart):
    """render(values=None, name=..., namespace=...) -> Rendered. Raises Helm's
    error (HelmValuesError for schema violations, HelmRenderError for a
    template `fail`) when Helm refuses the values."""

    def _render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
                namespace: str = NAMESPACE) -> Rendered:
        return parse_manifests(chart.render(values, name=name, namespace=namespace, is_install=True))

    return _render
