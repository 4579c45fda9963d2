"""Password-change hooks (``AUTH_PASSWORD_VALIDATORS`` entries)."""

from __future__ import annotations

from .services import auth_tokens_revoke_all


class RevokeTokensOnPasswordChange:
    """Revokes every API token of a user whose password changes; it refuses no password.

    Django calls ``password_changed(password, user)`` of each configured validator when a user saved after
    ``set_password`` (the admin, ``changepassword``, password forms, any code) — and not when only the stored
    hash is upgraded at login, so tokens survive a hasher upgrade.
    """

    def validate(self, password: str, user=None) -> None:
        """Accept every password (this entry only listens for changes)."""

    def password_changed(self, password: str, user=None) -> None:
        """Revoke all of ``user``'s API tokens."""
        if user is not None and user.pk is not None:
            auth_tokens_revoke_all(user=user)

    def get_help_text(self) -> str:
        return "Changing your password signs out every API token."
