from django.urls import path

from .consumers import ConversationConsumer
from .new_chat_socket import NewChatConsumer

websocket_urlpatterns = [
    path("ws/conversations/new/", NewChatConsumer.as_asgi()),
    path("ws/conversations/<int:conversation_id>/", ConversationConsumer.as_asgi()),
]
