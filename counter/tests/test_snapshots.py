import pytest
from django.core.management import call_command
from django.core.management.base import CommandError


def test_backup_of_a_missing_database_is_a_clear_error_and_creates_nothing(settings, tmp_path):
    settings.VISITS_DATABASE = settings.VISITS_DATA_DIR / "db.sqlite3"
    with pytest.raises(CommandError, match=r"cannot read .*db\.sqlite3: unable to open database"):
        call_command("backup", output=tmp_path / "copy.sqlite3")
    assert not settings.VISITS_DATABASE.exists()
    assert not (tmp_path / "copy.sqlite3").exists()
