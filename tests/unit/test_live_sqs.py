"""SQS messages -> inbox items: an SP-API envelope keyed on its NotificationId; anything else quarantined with a
reason (kept and counted, never processed)."""
import json

from omnirecon.live.sqs import to_incoming

ENVELOPE = {"NotificationVersion": "1.0", "NotificationType": "LISTINGS_ITEM_MFN_QUANTITY_CHANGE",
            "PayloadVersion": "1.0", "EventTime": "2026-12-01T10:00:00.000Z",
            "Payload": {"SellerId": "A1", "FulfillmentChannelCode": "DEFAULT", "Sku": "MUG", "Quantity": 3},
            "NotificationMetadata": {"ApplicationId": "amzn1.sp.solution.x", "SubscriptionId": "sub-1",
                                     "PublishTime": "2026-12-01T10:00:01.000Z", "NotificationId": "n-1"}}


def test_an_envelope_is_keyed_on_its_notification_id():
    item = to_incoming({"MessageId": "m-1", "Body": json.dumps(ENVELOPE)})
    assert (item.source, item.event_id, item.topic, item.quarantined) == (
        "amazon", "n-1", "LISTINGS_ITEM_MFN_QUANTITY_CHANGE", None)
    assert item.occurred_at.isoformat().startswith("2026-12-01T10:00:00")


def test_malformed_messages_are_quarantined_with_the_reason_and_their_message_id():
    bad = to_incoming({"MessageId": "m-2", "Body": "{oops"})
    assert bad.event_id == "sqs:m-2" and bad.quarantined.startswith("body is not JSON")
    partial = {k: v for k, v in ENVELOPE.items() if k != "Payload"}
    item = to_incoming({"MessageId": "m-3", "Body": json.dumps(partial)})
    assert item.quarantined == "not an SP-API notification envelope: missing Payload"
    no_id = dict(ENVELOPE, NotificationMetadata={"SubscriptionId": "s"})
    assert "NotificationId" in to_incoming({"MessageId": "m-4", "Body": json.dumps(no_id)}).quarantined
