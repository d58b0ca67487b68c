"""Personal API tokens (`Authorization: Bearer`): who a token belongs to, cached.

A token's user is cached for CACHE_SECONDS and dropped as soon as the token or its
user is saved or deleted, so a revoked token is refused on its next request.
"""

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from streaming import caching
from streaming.models import ApiToken


async def user_of(request: HttpRequest) -> AbstractBaseUser | None | bool:
    """The token's user; None without a bearer token; False for a bad one."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    key_hash = ApiToken.hash(raw.strip())
    # A cache that is away costs the database query, not the request.
    user = await caching.attempt(cache.get, _token_key(key_hash))
    if user is None:
        user = await sync_to_async(_token_owner)(key_hash)
        if user is None:
            return False
        await caching.attempt(
            cache.set, _token_key(key_hash), user, caching.CACHE_SECONDS
        )
    if not user.is_active:
        return False
    # Record use at most once a minute, so a busy token does not write per request.
    if await caching.attempt(cache.add, f"token-used:{key_hash}", 1, 60):
        await ApiToken.objects.filter(key_hash=key_hash).aupdate(
            last_used_at=timezone.now()
        )
    return user


def _token_owner(key_hash: str) -> AbstractBaseUser | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
    return None if token is None else token.user


def _token_key(key_hash: str) -> str:
    return f"token:{key_hash}"


@receiver([post_save, post_delete], sender=ApiToken)
def _forget_token(instance: ApiToken, **kwargs: object) -> None:
    cache.delete(_token_key(instance.key_hash))


@receiver([post_save, post_delete], sender=get_user_model())
def _forget_users_tokens(instance: AbstractBaseUser, **kwargs: object) -> None:
    """A user deactivated, made staff or deleted: their tokens are looked up again."""
    hashes = ApiToken.objects.filter(user_id=instance.pk).values_list(
        "key_hash", flat=True
    )
    cache.delete_many([_token_key(key_hash) for key_hash in hashes])
