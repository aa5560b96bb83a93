"""The obvious ingest design, to measure Passage's against: a DRF ModelSerializer over the
batch, then one bulk_create. Only the benchmark serves it.

It is given every fair advantage: the same key authentication, device ids resolved in one
query rather than one per item, no per-item uniqueness queries (conflicts are ignored by
the insert), and no task enqueued. It does not give per-item reasons: an invalid item fails
the whole batch, which is what `many=True` does.
"""

from typing import Any

from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.models import Device
from promotions.models import Ping, Scope


class BaselinePingSerializer(serializers.ModelSerializer):
    device_id = serializers.CharField(max_length=100)

    class Meta:
        model = Ping
        fields = [
            "ping_id",
            "device_id",
            "latitude",
            "longitude",
            "accuracy",
            "recorded_at",
            "speed",
            "mocked",
        ]
        validators: list[Any] = []


class BaselinePingView(APIView):
    required_scope = Scope.INGEST

    def post(self, request: Request) -> Response:
        serializer = BaselinePingSerializer(data=request.data.get("pings"), many=True)
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data
        devices = dict(
            Device.objects.filter(device_id__in={item["device_id"] for item in items}).values_list(
                "device_id", "pk"
            )
        )
        pings = [
            Ping(**{**item, "device_id": devices[item["device_id"]]})
            for item in items
            if item["device_id"] in devices
        ]
        Ping.objects.bulk_create(pings, ignore_conflicts=True)
        return Response({"accepted": len(pings)}, status=status.HTTP_202_ACCEPTED)
