from django import forms


class ComposerForm(forms.Form):
    text = forms.CharField(
        required=False,
        strip=False,
        max_length=100_000,
        error_messages={"max_length": "A message can be at most %(limit_value)d characters."},
    )

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        if not text.strip():
            raise forms.ValidationError("Type a message first.")
        return text
