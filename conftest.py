import pytest


@pytest.fixture(autouse=True)
def _data_dir(settings, tmp_path):
    """Point the app's data directory at a fresh temporary directory in every test.

    Static files are not collected in a fresh clone: in-process tests use plain storage. The
    server tests collect them and check the production storage (hashed, compressed names).
    """
    settings.VISITS_DATA_DIR = tmp_path / "data"
    settings.VISITS_DATA_DIR.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
