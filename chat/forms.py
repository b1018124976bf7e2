from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache

from .models import Attachment

MAX_ATTACHMENTS = 10


class ComposerForm(forms.Form):
    text = forms.CharField(
        required=False,
        strip=False,
        max_length=100_000,
        error_messages={"max_length": "A message can be at most %(limit_value)d characters."},
    )
    # Keys of uploads that are ready (see chat/attachments.py).
    attachments = forms.Field(required=False)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_attachments(self) -> list[Attachment]:
        keys = list(dict.fromkeys(self.data.getlist("attachments") if self.data else []))
        if len(keys) > MAX_ATTACHMENTS:
            raise forms.ValidationError(f"At most {MAX_ATTACHMENTS} attachments per message.")
        if not keys:
            return []
        found = {
            a.key: a
            for a in Attachment.objects.filter(key__in=keys, owner=self.user, message__isnull=True)
        }
        missing = [k for k in keys if k not in found]
        if missing:
            raise forms.ValidationError(
                "An attachment is no longer available; remove it and attach the file again."
            )
        waiting = [a for a in found.values() if a.status != Attachment.Status.READY]
        if waiting:
            names = ", ".join(a.original_name or "a file" for a in waiting)
            raise forms.ValidationError(
                f"Wait until {names} has finished uploading and converting, or remove it."
            )
        return [found[k] for k in keys]

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("text") or "").strip() and not cleaned.get("attachments"):
            if "text" not in self.errors and "attachments" not in self.errors:
                self.add_error("text", "Type a message or attach a file first.")
        return cleaned


class ThrottledLoginForm(AuthenticationForm):
    """Log-in that slows down guessing: after LOGIN_ATTEMPTS failures in LOGIN_WINDOW seconds,
    for one username or from one address, further tries are refused until the window passes."""

    attempts = 5
    window = 15 * 60

    def _keys(self) -> list[str]:
        username = (self.data.get("username") or "").strip().lower()
        address = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        return [f"login-failures:user:{username}", f"login-failures:addr:{address}"]

    def clean(self):
        keys = self._keys()
        if any(cache.get(key, 0) >= self.attempts for key in keys):
            raise forms.ValidationError(
                f"Too many failed log-ins. Wait {self.window // 60} minutes and try again.",
                code="throttled",
            )
        try:
            return super().clean()
        except forms.ValidationError:
            for key in keys:
                cache.add(key, 0, self.window)
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.set(key, 1, self.window)
            raise
