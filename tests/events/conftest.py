from tests.runtime.conftest import stub  # noqa: F401 - the OpenAI-compatible stub, session-wide
