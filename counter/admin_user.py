from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import identify_hasher, make_password

from counter.exceptions import AdminUserError


def admin_user_ensure(*, username: str, password_hash: str = "", password: str = "") -> str:
    """Create or update the superuser `username`; return what was done.

    Runs at every start, unlike `createsuperuser --noinput`. With `password_hash` every pod
    stores the same hash, which signed-cookie sessions need to stay valid across pods (the
    session's auth hash is an HMAC of the password hash). A plain `password` is hashed here with
    a new salt, so a session then only works on the pod that issued it.
    """
    if password_hash:
        try:
            identify_hasher(password_hash)
        except ValueError as error:
            raise AdminUserError(
                "VISITS_ADMIN_PASSWORD_HASH is not a Django password hash; make one with"
                " `make password-hash` (or `python manage.py password_hash`), and single-quote"
                " it on a shell command line: its $ signs must reach the app as they are"
            ) from error
    elif not password:
        return "no admin password configured: admin user left as it is"
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True}
    )
    same = user.password == password_hash if password_hash else user.check_password(password)
    if not created and same and user.is_superuser and user.is_staff and user.is_active:
        return f"admin user {username!r} is up to date"
    user.password = password_hash or make_password(password)
    user.is_staff = user.is_superuser = user.is_active = True
    user.save()
    return f"admin user {username!r} {'created' if created else 'updated'}"
