from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from streaming.models import ApiToken


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label for the token")

    def handle(self, *args, username: str, name: str, **options) -> None:
        try:
            user = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None
        token = ApiToken(user=user, name=name)
        raw = token.generate()
        token.save()
        self.stdout.write(raw)
