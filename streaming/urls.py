from django.urls import path

from streaming import views

app_name = "streaming"

urlpatterns = [
    path("chat/stream", views.chat_stream, name="chat-stream"),
    path("streams/", views.start_stream, name="stream-start"),
    path("streams/<int:stream_id>/events", views.stream_events, name="stream-events"),
    path("streams/<int:stream_id>/stop", views.stop_stream, name="stream-stop"),
]
