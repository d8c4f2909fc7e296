from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, make_password

PASSWORD = "s3cret-pass"


def test_the_hasher_is_a_plain_call_without_gevent_and_keeps_django_hashes(db):
    from django.conf import settings as django_settings

    assert django_settings.PASSWORD_HASHERS == ["counter.hashers.OffLoopPBKDF2PasswordHasher"]
    made = make_password(PASSWORD)
    assert made.startswith("pbkdf2_sha256$")
    assert check_password(PASSWORD, made)
    # A hash made by stock Django (the README's command, a Secret made elsewhere) still verifies.
    stock = PBKDF2PasswordHasher().encode(PASSWORD, "somesalt1234567890")
    assert check_password(PASSWORD, stock)
    assert not check_password("wrong", stock)
