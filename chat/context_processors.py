from django.conf import settings
from django.http import HttpRequest

from .archive import too_big
from .simulator.directives import HELP as SIMULATOR_DIRECTIVES


def playground(request: HttpRequest) -> dict:
    return {
        "simulator": settings.PLAYGROUND_USE_SIMULATOR,
        "simulator_directives": SIMULATOR_DIRECTIVES,
        "model_name": settings.PLAYGROUND_MODEL,
        "signup_open": settings.PLAYGROUND_SIGNUP,
        "import_limit_bytes": settings.PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES,
        "import_too_big": too_big(None).message,
    }
