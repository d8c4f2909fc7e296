import getpass
import sys

from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Print the hash of a password for VISITS_ADMIN_PASSWORD_HASH, and nothing else on stdout."
        " On a terminal it asks twice, without echoing (the prompts go to the terminal); with"
        " stdin not a terminal (a pipe, a file) it reads the password from stdin's first line"
        " and asks nothing."
    )

    def handle(self, *args: object, **options: object) -> None:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("the two passwords differ; nothing printed")
        else:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise CommandError("no password given; nothing printed")
        try:
            validate_password(password)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages) + " Nothing printed.") from error
        self.stdout.write(make_password(password))
