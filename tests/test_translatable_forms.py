"""Every word a form shows is translatable: labels, help texts, choices and error messages are
lazy translations (resolved in the language of the page that renders them), never plain text
fixed when the module was imported."""

import asyncio

import pytest
from django import forms
from django.utils import translation
from django.utils.functional import Promise

from chat import generation
from chat.conversations import GROUP_LABELS, group_by_date
from chat.forms import ComposerForm, ThrottledAdminLoginForm, ThrottledLoginForm
from chat.models import Message
from chat.settings_form import SettingsForm


def _choices(field: forms.Field) -> list:
    """A field's choices (else its widget's: a NullBooleanField's Select), flattened."""
    source = getattr(field, "choices", None) or getattr(field.widget, "choices", None) or []
    found = []
    for value, label in source:
        if isinstance(label, list | tuple):
            found.extend(label)
        else:
            found.append((value, label))
    return found


def untranslated(form: forms.BaseForm) -> list[str]:
    """Where a form shows text that is not a lazy translation (empty is fine). A choice whose
    label is its value (a model's name) is a name, not a word."""
    problems = []

    def check(where: str, text) -> None:
        if text and not isinstance(text, Promise):
            problems.append(f"{where}: {text!r}")

    for message_code, message in getattr(form, "error_messages", {}).items():
        check(f"form error {message_code}", message)
    for name, field in form.fields.items():
        check(f"{name}.label", field.label)
        check(f"{name}.help_text", field.help_text)
        for value, label in _choices(field):
            if label != value:
                check(f"{name} choice {value!r}", label)
        for message_code, message in field.error_messages.items():
            check(f"{name} error {message_code}", message)
    return problems


FORMS = {
    "ComposerForm": lambda: ComposerForm(),
    "ThrottledLoginForm": lambda: ThrottledLoginForm(request=None),
    "ThrottledAdminLoginForm": lambda: ThrottledAdminLoginForm(request=None),
    "SettingsForm": lambda: SettingsForm(),
}


@pytest.mark.parametrize("name", sorted(FORMS))
def test_every_word_of_a_form_is_a_lazy_translation(name):
    assert untranslated(FORMS[name]()) == []


def test_the_check_reports_plain_text():
    class Plain(forms.Form):
        title = forms.CharField(label="Title", help_text="A few words.")
        kind = forms.ChoiceField(choices=[("a", "Alpha")])
        size = forms.IntegerField(error_messages={"invalid": "Not a number."})

    assert untranslated(Plain()) == [
        "title.label: 'Title'",
        "title.help_text: 'A few words.'",
        "kind choice 'a': 'Alpha'",
        "size error invalid: 'Not a number.'",
    ]


def test_the_composer_refusal_counts_in_english():
    text = ComposerForm.base_fields["text"]
    assert text.error_messages["max_length"] % {"limit_value": 100_000} == (
        "A message can be at most 100000 characters."
    )


def test_sidebar_groups_keep_their_names_and_translate_their_headings():
    assert list(GROUP_LABELS) == ["Pinned", "Today", "Yesterday", "Previous 7 days", "Older"]
    assert all(isinstance(label, Promise) for label in GROUP_LABELS.values())
    assert group_by_date([], None) == []


async def test_a_reply_job_runs_in_the_language_of_what_started_it(monkeypatch):
    """The job's context is fresh (generation.start), but the language goes with it."""
    seen = {}

    async def run(self):
        seen["language"] = translation.get_language()
        self.told.set()

    async def announce():
        pass

    monkeypatch.setattr(generation.Job, "run", run)
    with translation.override("ar"):
        told = announce()
        task = await generation.start(Message(pk=10**9, conversation_id=1), {}, told)
        told.close()
    await asyncio.wait_for(task, 5)
    assert seen["language"] == "ar"
