"""The generation settings panel: every request field that changes the answer, validated with
the published schema's ranges, stored on the conversation in the API's own shape."""

import json
import math
import re
from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict
from django.utils.functional import lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy

from .models_list import offered_models

KNOWN_VOICES = ["Tina", "Ethan", "Serena", "Chelsie", "Cherry"]
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS = 128
MAX_STOP = 4
MAX_JSON_DEPTH = 64


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(
            _("%(number)s is too large to be a number the API accepts") % {"number": text}
        )
    return value


def _no_constant(name: str) -> None:
    raise ValueError(_("%(name)s is not a JSON number") % {"name": name})


def _json(text: str, what: str) -> Any:
    """Parsed JSON that can be stored and sent as it is: finite numbers, at most
    MAX_JSON_DEPTH levels, and text without NUL or lone surrogates (which PostgreSQL's jsonb
    and the API refuse, and which json.loads lets through as \\u escapes)."""
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise forms.ValidationError(_too_deep(what)) from None
    except ValueError as exc:
        raise forms.ValidationError(
            _("%(what)s is not valid JSON: %(error)s") % {"what": what, "error": exc}
        ) from None
    _check_json(value, what)
    return value


def _too_deep(what: str) -> str:
    return _("%(what)s is nested too deeply (at most %(levels)d levels).") % {
        "what": what,
        "levels": MAX_JSON_DEPTH,
    }


def _check_json(value: Any, what: str) -> None:
    stack = [(value, 1)]
    while stack:  # a loop, not recursion: the depth is what is being checked
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise forms.ValidationError(_too_deep(what))
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, what)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item, what)


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise forms.ValidationError(
            _("%(what)s: text in it cannot contain a NUL (\\u0000).") % {"what": what}
        )
    try:
        text.encode()
    except UnicodeEncodeError:
        raise forms.ValidationError(
            _("%(what)s: text in it cannot contain a lone surrogate (\\ud800 to \\udfff).")
            % {"what": what}
        ) from None


def validate_json_schema(schema: Any, what: str) -> None:
    """A JSON Schema object that itself validates against the JSON Schema meta-schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise forms.ValidationError(
            _("%(what)s must be a JSON object (a JSON Schema).") % {"what": what}
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise forms.ValidationError(
            _("%(what)s is not a valid JSON Schema: %(error)s")
            % {"what": what, "error": exc.message}
        ) from None
    except RecursionError:
        raise forms.ValidationError(
            _("%(what)s is nested too deeply to check.") % {"what": what}
        ) from None


def parse_tools(text: str) -> list[dict[str, Any]]:
    """Function definitions from the tools editor, in the API's `tools` shape."""
    value = _json(text, _("Tools"))
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise forms.ValidationError(_("Tools must be a JSON list of function definitions."))
    if len(value) > MAX_TOOLS:
        raise forms.ValidationError(
            ngettext(
                "At most %(limit)d tools; this list has %(count)d.",
                "At most %(limit)d tools; this list has %(count)d.",
                len(value),
            )
            % {"limit": MAX_TOOLS, "count": len(value)}
        )
    tools, names = [], set()
    for number, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise forms.ValidationError(
                _("Tool %(number)d must be a JSON object.") % {"number": number}
            )
        function = (
            item.get("function", item) if item.get("type", "function") == "function" else None
        )
        if not isinstance(function, dict):
            raise forms.ValidationError(
                _('Tool %(number)d: only "type": "function" is supported.') % {"number": number}
            )
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise forms.ValidationError(
                _("Tool %(number)d: the name must be 1 to 64 letters, digits, _ or -.")
                % {"number": number}
            )
        if name in names:
            raise forms.ValidationError(
                _("Tool %(number)d: the name %(name)s is used twice.")
                % {"number": number, "name": repr(name)}
            )
        names.add(name)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        validate_json_schema(parameters, _("Tool %(name)s parameters") % {"name": repr(name)})
        clean = {"name": name, "parameters": parameters}
        if isinstance(function.get("description"), str):
            clean["description"] = function["description"]
        if isinstance(function.get("strict"), bool):
            clean["strict"] = function["strict"]
        tools.append({"type": "function", "function": clean})
    return tools


def _default_model(model: str) -> str:
    return _("Default (%(model)s)") % {"model": model}


# The model picker's first choice, in the language of the page that shows it.
default_model_label = lazy(_default_model, str)


class SettingsForm(forms.Form):
    """Field names follow the API; blank means "not sent" (the model's default applies).
    Labels are the panel's (chat/settings.html may give its own beside a field)."""

    system_prompt = forms.CharField(
        label=gettext_lazy("System prompt"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    model = forms.ChoiceField(label=gettext_lazy("Model"), required=False)
    temperature = forms.FloatField(
        label=gettext_lazy("Temperature"), required=False, min_value=0, max_value=2
    )
    top_p = forms.FloatField(
        label=gettext_lazy("Top p"), required=False, min_value=0.01, max_value=1
    )
    max_tokens = forms.IntegerField(label=gettext_lazy("Max tokens"), required=False, min_value=1)
    stop = forms.CharField(
        label=gettext_lazy("Stop sequences"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy("One stop sequence per line, up to 4."),
    )
    seed = forms.IntegerField(label=gettext_lazy("Seed"), required=False, min_value=1)
    presence_penalty = forms.FloatField(
        label=gettext_lazy("Presence penalty"), required=False, min_value=-2, max_value=2
    )
    frequency_penalty = forms.FloatField(
        label=gettext_lazy("Frequency penalty"), required=False, min_value=-2, max_value=2
    )
    response_format = forms.ChoiceField(
        label=gettext_lazy("Response format"),
        required=False,
        choices=[
            ("", gettext_lazy("Text (default)")),
            ("json_object", gettext_lazy("JSON object")),
            ("json_schema", gettext_lazy("JSON schema")),
        ],
    )
    json_schema = forms.CharField(
        label=gettext_lazy("JSON schema"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text=gettext_lazy(
            '{"name": "answer", "schema": {...}, "strict": true}, or just the schema.'
        ),
    )
    enable_thinking = forms.BooleanField(label=gettext_lazy("Enable thinking"), required=False)
    thinking_budget = forms.IntegerField(
        label=gettext_lazy("Thinking budget (tokens)"), required=False, min_value=1
    )
    logprobs = forms.BooleanField(label=gettext_lazy("Logprobs"), required=False)
    top_logprobs = forms.IntegerField(
        label=gettext_lazy("Alternatives per token"), required=False, min_value=0, max_value=20
    )
    audio_output = forms.BooleanField(
        required=False, label=gettext_lazy("Spoken answer (audio output)")
    )
    voice = forms.CharField(
        label=gettext_lazy("Voice"),
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"list": "known-voices"}),
    )
    tools = forms.CharField(
        label=gettext_lazy("Functions (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
    )
    tool_choice = forms.CharField(
        label=gettext_lazy("Tool choice"),
        required=False,
        max_length=64,
        help_text=gettext_lazy("auto, none, required, or the name of one function."),
    )
    parallel_tool_calls = forms.NullBooleanField(
        label=gettext_lazy("Parallel tool calls"),
        required=False,
        widget=forms.Select(
            choices=[
                ("", pgettext_lazy("parallel tool calls", "Default")),
                ("true", gettext_lazy("Yes")),
                ("false", gettext_lazy("No")),
            ]
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        models = offered_models()  # the upstream's own list when it answers
        # Model names are shown as they are: they are names, not words.
        self.fields["model"].choices = [("", default_model_label(settings.PLAYGROUND_MODEL))] + [
            (m, m) for m in models
        ]

    def clean_stop(self) -> list[str]:
        lines = [line for line in self.cleaned_data["stop"].splitlines() if line != ""]
        if len(lines) > MAX_STOP:
            raise forms.ValidationError(
                ngettext(
                    "At most %(limit)d stop sequences; you gave %(count)d.",
                    "At most %(limit)d stop sequences; you gave %(count)d.",
                    len(lines),
                )
                % {"limit": MAX_STOP, "count": len(lines)}
            )
        return lines

    def clean_json_schema(self) -> dict[str, Any] | None:
        text = self.cleaned_data["json_schema"].strip()
        if not text:
            return None
        value = _json(text, _("The JSON schema"))
        if not isinstance(value, dict):
            raise forms.ValidationError(_("The JSON schema must be a JSON object."))
        wrapped = value if "schema" in value else {"name": "response", "schema": value}
        name = wrapped.get("name", "response")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise forms.ValidationError(
                _("The schema's name must be 1 to 64 letters, digits, _ or -.")
            )
        validate_json_schema(wrapped["schema"], _("The schema"))
        clean = {"name": name, "schema": wrapped["schema"]}
        if isinstance(wrapped.get("strict"), bool):
            clean["strict"] = wrapped["strict"]
        return clean

    def clean_tools(self) -> list[dict[str, Any]]:
        text = self.cleaned_data["tools"].strip()
        return parse_tools(text) if text else []

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("response_format") == "json_schema" and not data.get("json_schema"):
            if "json_schema" not in self.errors:
                self.add_error("json_schema", _("Give the JSON schema the answer must follow."))
        if data.get("thinking_budget") and not data.get("enable_thinking"):
            self.add_error("thinking_budget", _("A thinking budget needs thinking turned on."))
        if data.get("top_logprobs") is not None and not data.get("logprobs"):
            self.add_error("top_logprobs", _("Top log-probabilities need log-probabilities on."))
        if data.get("audio_output") and data.get("enable_thinking"):
            self.add_error(
                "audio_output",
                _(
                    "The model cannot speak and think in one reply: the vendor offers audio "
                    "output only with thinking off. Turn one of them off."
                ),
            )
        if data.get("audio_output") and not (data.get("voice") or "").strip():
            self.add_error(
                "voice",
                _("Pick a voice for spoken answers, e.g. %(voice)s.") % {"voice": KNOWN_VOICES[0]},
            )
        choice = (data.get("tool_choice") or "").strip()
        names = [t["function"]["name"] for t in data.get("tools") or []]
        if choice and choice not in ("auto", "none", "required") and choice not in names:
            self.add_error(
                "tool_choice",
                _("%(choice)s is not one of the tools; use auto, none, required or a tool's name.")
                % {"choice": repr(choice)},
            )
        if (choice or data.get("parallel_tool_calls") is not None) and not names:
            self.add_error(
                "tool_choice", _("Tool choice and parallel calls need at least one tool.")
            )
        return data

    def to_settings(self) -> dict[str, Any]:
        """The cleaned form as stored on a conversation: API-shaped, only what was set."""
        data = self.cleaned_data
        result: dict[str, Any] = {}
        if data["system_prompt"].strip():
            result["system_prompt"] = data["system_prompt"]
        if data["model"]:
            result["model"] = data["model"]
        for name in (
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "thinking_budget",
            "top_logprobs",
        ):
            if data[name] is not None:
                result[name] = data[name]
        if data["stop"]:
            result["stop"] = data["stop"]
        if data["response_format"] == "json_object":
            result["response_format"] = {"type": "json_object"}
        elif data["response_format"] == "json_schema":
            result["response_format"] = {"type": "json_schema", "json_schema": data["json_schema"]}
        if data["enable_thinking"]:
            result["enable_thinking"] = True
        if data["logprobs"]:
            result["logprobs"] = True
        if data["audio_output"]:
            result["modalities"] = ["text", "audio"]
            result["audio"] = {"voice": data["voice"].strip(), "format": "wav"}
        if data["tools"]:
            result["tools"] = data["tools"]
            choice = (data["tool_choice"] or "").strip()
            if choice in ("auto", "none", "required"):
                result["tool_choice"] = choice
            elif choice:
                result["tool_choice"] = {"type": "function", "function": {"name": choice}}
            if data["parallel_tool_calls"] is not None:
                result["parallel_tool_calls"] = data["parallel_tool_calls"]
        return result


def initial_from_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """The form's initial values for settings stored by `SettingsForm.to_settings`. Pure."""
    initial = {k: v for k, v in stored.items() if k in SettingsForm.base_fields}
    initial["stop"] = "\n".join(stored.get("stop") or [])
    response_format = (stored.get("response_format") or {}).get("type", "")
    initial["response_format"] = "" if response_format == "text" else response_format
    if response_format == "json_schema":
        initial["json_schema"] = json.dumps(stored["response_format"]["json_schema"], indent=2)
    if "audio" in (stored.get("modalities") or []):
        initial["audio_output"] = True
        initial["voice"] = (stored.get("audio") or {}).get("voice", "")
    initial["tools"] = json.dumps(stored["tools"], indent=2) if stored.get("tools") else ""
    if "parallel_tool_calls" in stored:
        initial["parallel_tool_calls"] = "true" if stored["parallel_tool_calls"] else "false"
    choice = stored.get("tool_choice")
    initial["tool_choice"] = (
        choice["function"]["name"] if isinstance(choice, dict) else choice or ""
    )
    return initial


def _as_posted(form_class: type[SettingsForm], initial: dict[str, Any], name: str):
    """A field's initial value as a browser would post it (None: not posted at all)."""
    value = initial.get(name)
    field = form_class.base_fields[name]
    if isinstance(field, forms.NullBooleanField):
        return "" if value is None else str(value).lower()
    if isinstance(field, forms.BooleanField):
        return "on" if value else None
    return "" if value is None else str(value)


def settings_data(stored: dict[str, Any]) -> QueryDict:
    """Stored settings as the panel would post them. Pure."""
    data = QueryDict(mutable=True)
    initial = initial_from_settings(stored)
    for name in SettingsForm.base_fields:
        value = _as_posted(SettingsForm, initial, name)
        if value is not None:
            data[name] = value
    return data


def autosaved_settings(
    data: QueryDict, stored: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """(The settings to store, or None if nothing can be; the posted form's errors by field).

    A field with a wrong value keeps its stored value while the others are saved; one whose
    stored value is no longer right with the rest (e.g. a thinking budget once thinking is off)
    is left out."""
    form = SettingsForm(data)
    if form.is_valid():
        return form.to_settings(), {}
    errors = {name: list(messages) for name, messages in form.errors.items()}
    merged = data.copy()
    initial = initial_from_settings(stored)
    for attempt in ("stored", "blank"):
        wrong = [name for name in form.errors if name in SettingsForm.base_fields]
        if not wrong:
            return None, errors  # only a refusal of the whole form: nothing to keep
        for name in wrong:
            value = _as_posted(SettingsForm, initial, name) if attempt == "stored" else None
            merged.pop(name, None)
            if value is not None:
                merged[name] = value
        form = SettingsForm(merged)
        if form.is_valid():
            return form.to_settings(), errors
    return None, errors
