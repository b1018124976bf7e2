from django.apps import AppConfig
from django.conf import settings


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.db.models.signals import post_save

        from . import files, languages, socket_sessions

        # A person's chosen language comes with them into each new session.
        user_logged_in.connect(
            languages.remember_on_log_in, dispatch_uid="remember-language-on-log-in"
        )

        # A socket lives no longer than its session: log-out ends the session's sockets, a
        # password change (or deactivation) has each of the user's sockets check its own.
        user_logged_out.connect(
            socket_sessions.end_session_sockets, dispatch_uid="end-session-sockets"
        )
        post_save.connect(
            socket_sessions.recheck_user_sockets,
            sender=get_user_model(),
            dispatch_uid="recheck-user-sockets",
        )

        # Pictures, audio and video from a store with links of its own (files.direct_url): the
        # page's Content-Security-Policy lets them load from there too.
        origin = files.direct_origin()
        if origin:
            policy = dict(settings.SECURE_CSP)
            for directive in ("img-src", "media-src"):
                policy[directive] = [*policy.get(directive, []), origin]
            settings.SECURE_CSP = policy
