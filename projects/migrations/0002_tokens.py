"""API tokens move to django-rest-knox: the plain-text tokens of DRF's ``authtoken`` table become knox tokens
(only their SHA-512 digest is kept), expiring one ``AUTH_TOKEN_TTL_HOURS`` from now, and the old table is dropped.

Clients keep working with the token they have until it expires; nothing in the database can show it again.
A database that never had ``rest_framework.authtoken`` is left alone.
"""

from django.db import migrations
from django.utils import timezone

OLD_TABLE = "authtoken_token"


def hash_old_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS, knox_settings

    AuthToken = apps.get_model("knox", "AuthToken")
    ttl = knox_settings.TOKEN_TTL
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {schema_editor.quote_name(OLD_TABLE)}")
        rows = cursor.fetchall()
    AuthToken.objects.bulk_create(
        [
            AuthToken(digest=hash_token(key), token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id,
                      expiry=timezone.now() + ttl if ttl is not None else None)
            for key, user_id in rows
        ],
        ignore_conflicts=True,
    )
    schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(OLD_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0001_initial"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(hash_old_tokens, migrations.RunPython.noop)]
