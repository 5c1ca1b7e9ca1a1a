import pytest

from stack import Stack, build_test_images


@pytest.fixture(scope="session")
def test_image():
    return build_test_images()


@pytest.fixture
def make_stack(test_image, tmp_path_factory):
    """Factory for deployments that are always torn down, also when the test fails."""
    stacks = []

    def factory(**kwargs):
        stack = Stack(tmp_path_factory.mktemp("stack"), **kwargs)
        stacks.append(stack)
        return stack

    yield factory
    for stack in stacks:
        stack.down()


@pytest.fixture(scope="module")
def served(test_image, tmp_path_factory):
    """One healthy basic deployment with an API key, shared by the API, auth and secrets tests."""
    stack = Stack(tmp_path_factory.mktemp("served"), preset="basic", environment={})
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
