from django.urls import path

from queues.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.page, name="page"),
    path("api/queues", views.queues, name="queues"),
    path("api/queues/<str:action_ref>", views.queue_detail, name="queue-detail"),
    path("api/executions/<str:execution_id>/cancel", views.cancel, name="cancel"),
]
