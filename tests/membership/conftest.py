"""Seeds for the membership simulations: fixed by default, MEMBERSHIP_SEED=<n> to rerun one.

A test can run over several seeds with ``@pytest.mark.parametrize("seed", [...], indirect=True)``
(``None`` is the default seed); ``MEMBERSHIP_SEED`` still overrides them.
"""

import os

import pytest

DEFAULT_SEED = 20240611


@pytest.fixture
def seed(request) -> int:
    param = getattr(request, "param", None)
    value = int(os.environ.get("MEMBERSHIP_SEED", DEFAULT_SEED if param is None else param))
    request.node.user_properties.append(("membership_seed", value))
    return value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for key, value in item.user_properties:
            if key == "membership_seed":
                report.sections.append(("membership seed", f"rerun with MEMBERSHIP_SEED={value}"))
