// The sidebar's language choice (templates/chat/language.html) applies as soon as it changes.
document.addEventListener("change", (event) => {
  const select = event.target.closest?.("[data-action=choose-language]");
  if (select && select.form) select.form.requestSubmit();
});
