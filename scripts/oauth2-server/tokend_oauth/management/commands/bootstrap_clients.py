"""Creates the test clients: one confidential client whose tokens come from
the password grant and refresh with rotation, one for client_credentials
(django-oauth-toolkit allows one grant type per application)."""
from django.core.management.base import BaseCommand
from oauth2_provider.models import get_application_model

CLIENTS = [
    ("tokend-refresh", "tokend-refresh-secret", "password"),
    ("tokend-cc", "tokend-cc-secret", "client-credentials"),
]


class Command(BaseCommand):
    help = "Create tokend's test OAuth2 clients (idempotent)."

    def handle(self, *args, **options):
        Application = get_application_model()
        for client_id, secret, grant in CLIENTS:
            if Application.objects.filter(client_id=client_id).exists():
                continue
            Application.objects.create(
                name=client_id, client_id=client_id, client_secret=secret,
                client_type="confidential", authorization_grant_type=grant)
