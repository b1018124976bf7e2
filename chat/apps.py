from django.apps import AppConfig
from django.conf import settings


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from . import files

        # Pictures, audio and video from a store with links of its own (files.direct_url): the
        # page's Content-Security-Policy lets them load from there too.
        origin = files.direct_origin()
        if origin:
            policy = dict(settings.SECURE_CSP)
            for directive in ("img-src", "media-src"):
                policy[directive] = [*policy.get(directive, []), origin]
            settings.SECURE_CSP = policy
