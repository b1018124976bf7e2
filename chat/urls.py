from django.urls import path

from . import attachments, languages, views

urlpatterns = [
    path("", views.index, name="index"),
    path("i18n/language/", languages.choose, name="choose_language"),
    path("i18n/<str:language>/catalog.js", languages.catalog, name="js_catalog"),
    path("setup/", views.setup, name="setup"),
    path("accounts/login/", views.login, name="login"),
    path("accounts/logout/", views.logout, name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("new/", views.new_chat, name="new_chat"),
    path("new/send/", views.send, name="send_new"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("c/<int:conversation_id>/send/", views.send, name="send"),
    path("c/<int:conversation_id>/stop/", views.stop, name="stop"),
    path("c/<int:conversation_id>/m/<int:message_id>/retry/", views.retry, name="retry"),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/switch/",
        views.switch_branch,
        name="switch_branch",
    ),
    path("c/<int:conversation_id>/m/<int:message_id>/edit/", views.edit_message, name="edit"),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/delete/",
        views.delete_message,
        name="delete_message",
    ),
    path(
        "c/<int:conversation_id>/settings/",
        views.conversation_settings,
        name="conversation_settings",
    ),
    path("c/<int:conversation_id>/m/<int:message_id>/code/", views.view_code, name="view_code"),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/tool-results/",
        views.tool_results,
        name="tool_results",
    ),
    path("search/", views.search, name="search"),
    path("c/<int:conversation_id>/rename/", views.rename, name="rename"),
    path("c/<int:conversation_id>/pin/", views.pin, name="pin"),
    path("c/<int:conversation_id>/delete/", views.delete_conversation, name="delete_conversation"),
    path("settings/", views.default_settings, name="default_settings"),
    path("presets/", views.save_preset, name="save_preset"),
    path("presets/<int:preset_id>/apply/", views.apply_preset, name="apply_preset"),
    path("presets/<int:preset_id>/default/", views.default_preset, name="default_preset"),
    path("presets/<int:preset_id>/delete/", views.delete_preset, name="delete_preset"),
    path("uploads/", attachments.start, name="upload_start"),
    path("uploads/<slug:key>/", attachments.upload, name="upload"),
    path("uploads/<slug:key>/delete/", attachments.delete, name="upload_delete"),
    path("media/signed/<str:token>/", attachments.serve_signed, name="signed_media"),
    path("media/<slug:key>/<slug:variant>/", attachments.serve, name="attachment_media"),
]

# sharing
from . import sharing  # noqa: E402  (kept with its URLs: one block to merge)

urlpatterns += [
    path("c/<int:conversation_id>/share/", sharing.create_share, name="share_create"),
    path("shares/", sharing.shares, name="shares"),
    path("shares/<int:share_id>/revoke/", sharing.revoke, name="share_revoke"),
    path("s/<slug:token>/", sharing.shared, name="shared"),
    path("s/<slug:token>/continue/", sharing.continue_shared, name="share_continue"),
    path(
        "s/<slug:token>/media/<slug:key>/<slug:variant>/",
        sharing.shared_media,
        name="shared_media",
    ),
]

# archive
from . import archive  # noqa: E402  (kept with its URLs: one block to merge)

urlpatterns += [
    path("c/<int:conversation_id>/export.md", archive.export_markdown, name="export_markdown"),
    path("c/<int:conversation_id>/export.zip", archive.export_zip, name="export_zip"),
    path("import/", archive.import_conversation, name="import_conversation"),
]

# calls
from . import calls  # noqa: E402  (kept with its URLs: one block to merge)

urlpatterns += [
    path("c/<int:conversation_id>/call/turn/", calls.turn, name="call_turn"),
]

# compare
from . import compare  # noqa: E402  (kept with its URLs: one block to merge)

urlpatterns += [
    path("new/compare/", compare.send, name="compare_new"),
    path("c/<int:conversation_id>/compare/", compare.send, name="compare"),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/compare/", compare.again, name="compare_again"
    ),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/compare/retry/",
        compare.retry_column,
        name="compare_retry",
    ),
    path("c/<int:conversation_id>/m/<int:message_id>/keep/", compare.keep_view, name="keep"),
]
