import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a first superuser with a one-time password, if there is no user yet."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options) -> None:
        User = get_user_model()
        if User.objects.exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Created the first user. Log in at http://127.0.0.1:8000/admin/ as\n"
                f"    username: {username}\n    password: {password}\n"
                f"  This password is shown only now; change it under 'Change password'.\n"
            )
        )
