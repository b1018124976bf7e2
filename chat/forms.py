from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, ngettext_lazy, pgettext

from . import throttle
from .models import Attachment

MAX_ATTACHMENTS = 10


class ComposerForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("Message"),
        required=False,
        strip=False,
        max_length=100_000,
        error_messages={
            "max_length": ngettext_lazy(
                "A message can be at most %(limit_value)d character.",
                "A message can be at most %(limit_value)d characters.",
                "limit_value",
            )
        },
    )
    # Keys of uploads that are ready (see chat/attachments.py).
    attachments = forms.Field(label=gettext_lazy("Attachments"), required=False)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_attachments(self) -> list[Attachment]:
        keys = list(dict.fromkeys(self.data.getlist("attachments") if self.data else []))
        if len(keys) > MAX_ATTACHMENTS:
            raise forms.ValidationError(
                ngettext(
                    "At most %(count)d attachment per message.",
                    "At most %(count)d attachments per message.",
                    MAX_ATTACHMENTS,
                )
                % {"count": MAX_ATTACHMENTS}
            )
        if not keys:
            return []
        # Keys are slugs: one with a NUL names no upload (and PostgreSQL refuses to look).
        asked = [key for key in keys if "\x00" not in key]
        found = {
            a.key: a
            for a in Attachment.objects.filter(key__in=asked, owner=self.user, message__isnull=True)
        }
        missing = [k for k in keys if k not in found]
        if missing:
            raise forms.ValidationError(
                _("An attachment is no longer available; remove it and attach the file again.")
            )
        waiting = [a for a in found.values() if a.status != Attachment.Status.READY]
        if waiting:
            names = pgettext("list separator", ", ").join(
                a.original_name or _("a file") for a in waiting
            )
            raise forms.ValidationError(
                _("Wait until %(names)s has finished uploading and converting, or remove it.")
                % {"names": names}
            )
        return [found[k] for k in keys]

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("text") or "").strip() and not cleaned.get("attachments"):
            if "text" not in self.errors and "attachments" not in self.errors:
                self.add_error("text", _("Type a message or attach a file first."))
        return cleaned


class ThrottledLoginForm(AuthenticationForm):
    """Log-in that slows down guessing (chat.throttle): a refused try names the wait, and its
    password is not even checked."""

    def clean(self):
        username = self.data.get("username") or ""
        address = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        wait = throttle.attempt(username, address)
        if wait:
            raise forms.ValidationError(throttle.wait_message(wait), code="throttled")
        try:
            return super().clean()
        finally:
            # The right password (maybe on an account not let in here): not a guess. Nothing
            # is known without one (a form sent with no password never authenticates).
            if self.user_cache is not None:
                throttle.succeeded(username, address)


class ThrottledAdminLoginForm(ThrottledLoginForm, AdminAuthenticationForm):
    """The admin site's log-in (staff only), on the same counters as the main form."""
