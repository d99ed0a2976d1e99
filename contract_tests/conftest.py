from tests.conftest import test_env  # noqa: F401  (one throwaway database for the whole run)
