from django.conf import settings
from django.http import HttpRequest


def playground(request: HttpRequest) -> dict:
    return {
        "simulator": settings.PLAYGROUND_USE_SIMULATOR,
        "model_name": settings.PLAYGROUND_MODEL,
        "signup_open": settings.PLAYGROUND_SIGNUP,
    }
