import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User

from counter.admin_user import admin_user_ensure
from counter.exceptions import AdminUserError


def test_creates_then_keeps_the_admin_from_a_hash(db):
    password_hash = make_password("s3cret-pass")
    assert admin_user_ensure(username="admin", password_hash=password_hash) == (
        "admin user 'admin' created"
    )
    assert admin_user_ensure(username="admin", password_hash=password_hash) == (
        "admin user 'admin' is up to date"
    )
    user = User.objects.get()
    assert (user.password, user.is_superuser, user.is_staff) == (password_hash, True, True)


def test_a_new_hash_updates_the_password(db):
    admin_user_ensure(username="admin", password_hash=make_password("old-password"))
    admin_user_ensure(username="admin", password_hash=make_password("new-password"))
    assert User.objects.get().check_password("new-password")


def test_plain_password_is_hashed_and_checked_not_rehashed(db):
    assert admin_user_ensure(username="ops", password="s3cret-pass").endswith("created")
    stored = User.objects.get().password
    assert admin_user_ensure(username="ops", password="s3cret-pass").endswith("is up to date")
    assert User.objects.get().password == stored


def test_a_demoted_admin_is_restored(db):
    password_hash = make_password("s3cret-pass")
    admin_user_ensure(username="admin", password_hash=password_hash)
    User.objects.update(is_superuser=False, is_active=False)
    assert admin_user_ensure(username="admin", password_hash=password_hash).endswith("updated")
    assert User.objects.get().is_superuser


def test_no_password_leaves_users_alone(db):
    assert admin_user_ensure(username="admin").startswith("no admin password configured")
    assert not User.objects.exists()


def test_a_malformed_hash_is_a_clear_error(db):
    with pytest.raises(AdminUserError, match="is not a Django password hash"):
        admin_user_ensure(username="admin", password_hash="plain-text-oops")
    assert not User.objects.exists()
