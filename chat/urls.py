from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
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
]
