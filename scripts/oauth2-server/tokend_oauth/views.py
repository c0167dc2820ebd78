"""Test-only endpoints: mint refresh tokens as a completed sign-in would,
and tell whether a refresh token is still alive. Loopback only."""
import json
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from oauthlib.common import generate_token
from oauth2_provider.models import get_access_token_model, get_application_model, get_refresh_token_model

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
Application = get_application_model()


def health(request):
    return HttpResponse("ok")


def mint(request):
    """POST /test/mint?count=N -> {"refresh_tokens": [...]} for the refresh client."""
    count = int(request.GET.get("count", "1"))
    app = Application.objects.get(client_id="tokend-refresh")
    user, _ = get_user_model().objects.get_or_create(username="tokend-test")
    tokens = []
    for _ in range(count):
        access = AccessToken.objects.create(
            user=user, application=app, token=generate_token(),
            expires=timezone.now() + timedelta(seconds=5), scope="read")
        refresh = RefreshToken.objects.create(
            user=user, application=app, token=generate_token(), access_token=access,
            token_family=uuid.uuid4())
        tokens.append(refresh.token)
    return JsonResponse({"refresh_tokens": tokens})


def status(request):
    """POST /test/status with {"refresh_tokens": [...]}: which are usable
    (exist, not revoked) — a family killed by reuse detection is revoked."""
    body = json.loads(request.body or b"{}")
    live = {}
    for token in body.get("refresh_tokens", []):
        row = RefreshToken.objects.filter(token=token).first()
        live[token] = bool(row and row.revoked is None)
    return JsonResponse({"live": live})
