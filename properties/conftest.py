"""The theorems as property tests are theorycheck tests: their Hypothesis tests run under the plugin's
profile (``ci`` unless --theorycheck-profile or the user's own profile says otherwise)."""

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.theorycheck)
