import pytest

import entrypoint


@pytest.fixture(scope="session")
def catalogue():
    return entrypoint.Catalogue.load()
