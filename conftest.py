import pytest


@pytest.fixture(autouse=True)
def _data_dir(settings, tmp_path):
    """Point the app's data directory at a fresh temporary directory in every test."""
    settings.VISITS_DATA_DIR = tmp_path / "data"
    settings.VISITS_DATA_DIR.mkdir()
