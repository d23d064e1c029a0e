"""An SQS-compatible queue API (the AWS JSON 1.0 protocol of SQS: POST / with X-Amz-Target: AmazonSQS.<Action>),
SigV4-verified with the sandbox's AWS keys, that a real AWS SDK reaches by endpoint_url.

CreateQueue, GetQueueUrl, GetQueueAttributes, SendMessage, ReceiveMessage (long polling, at most 10),
DeleteMessage, ChangeMessageVisibility; a message not deleted within its visibility timeout is delivered
again (ApproximateReceiveCount counts). Durations (visibility, wait) are documented seconds, scaled."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from omnirecon_sandbox.http import Response

CONTENT_TYPE = "application/x-amz-json-1.0"
MAX_MESSAGES = 10
MAX_WAIT_S = 20
DEFAULT_VISIBILITY_S = 30
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")


@dataclass
class Message:
    id: str
    body: str
    sent_ms: int
    visible_at: float = 0.0
    receive_count: int = 0
    first_receive_ms: int | None = None
    handles: set = field(default_factory=set)


@dataclass
class Queue:
    name: str
    created_s: int
    attributes: dict
    messages: list = field(default_factory=list)


def error(status: int, type_: str, query_code: str, message: str, fault: str = "Sender") -> Response:
    """The JSON-protocol error, with the query-compatible code botocore reads for SQS."""
    return Response(status, json.dumps({"__type": type_, "message": message}).encode(),
                    {"Content-Type": CONTENT_TYPE, "x-amzn-query-error": f"{query_code};{fault}",
                     "x-amzn-RequestId": str(uuid.uuid4())})


class SqsService:
    def __init__(self, sandbox):
        self.sb = sandbox
        self.queues: dict[str, Queue] = {}
        self.cond = threading.Condition()

    # -- helpers for the notification side ----------------------------------------------------------------------
    def arn(self, name: str) -> str:
        c = self.sb.credentials
        return f"arn:aws:sqs:{c.aws_region}:{c.aws_account_id}:{name}"

    def ensure(self, name: str, attributes: dict | None = None) -> Queue:
        with self.cond:
            q = self.queues.get(name)
            if q is None:
                attrs = {"VisibilityTimeout": str(DEFAULT_VISIBILITY_S), "ReceiveMessageWaitTimeSeconds": "0",
                         "MessageRetentionPeriod": "345600", "MaximumMessageSize": "262144", "DelaySeconds": "0"}
                attrs.update({k: str(v) for k, v in (attributes or {}).items()})
                q = self.queues[name] = Queue(name, int(self.sb.clock.now().timestamp()), attrs)
            return q

    def send(self, name: str, body: str) -> str:
        clock = self.sb.clock
        msg = Message(str(uuid.uuid4()), body, int(clock.now().timestamp() * 1000), clock.monotonic())
        with self.cond:
            q = self.queues.get(name) or self.ensure(name)
            q.messages.append(msg)
            self.cond.notify_all()
        return msg.id

    # -- the wire ---------------------------------------------------------------------------------------------
    def handle(self, req) -> Response:
        target = req.header("x-amz-target") or ""
        if not target.startswith("AmazonSQS."):
            return error(400, "com.amazon.coral.service#UnknownOperationException", "UnknownOperation",
                         "The requested operation is not supported")
        denied = self.verify(req)
        if denied:
            return denied
        try:
            body = json.loads(req.body.decode() or "{}")
        except ValueError:
            return error(400, "com.amazon.coral.service#SerializationException", "SerializationException",
                         "Request body is not valid JSON")
        action = target.split(".", 1)[1]
        fn = {"CreateQueue": self.create_queue, "GetQueueUrl": self.get_queue_url,
              "GetQueueAttributes": self.get_queue_attributes, "SendMessage": self.send_message,
              "ReceiveMessage": self.receive, "DeleteMessage": self.delete,
              "ChangeMessageVisibility": self.change_visibility}.get(action)
        if fn is None:
            return error(400, "com.amazon.coral.service#UnknownOperationException", "UnknownOperation",
                         f"The action {action} is not valid for this endpoint.")
        return fn(req, body)

    def verify(self, req) -> Response | None:
        """AWS Signature Version 4: recompute the signature from the request and the sandbox's secret key."""
        c = self.sb.credentials
        auth = req.header("authorization") or ""
        m = re.match(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                     r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$", auth)
        if not m:
            return error(400, "com.amazon.coral.service#MissingAuthenticationTokenException",
                         "MissingAuthenticationToken", "Request is missing Authentication Token")
        key_id, day, region, service, signed, signature = m.groups()
        if key_id != c.aws_access_key_id:
            return error(403, "com.amazon.coral.service#InvalidClientTokenId", "InvalidClientTokenId",
                         "The security token included in the request is invalid.")
        amz_date = req.header("x-amz-date") or ""
        names = signed.split(";")
        canonical_headers = "".join(f"{n}:{' '.join((req.header(n) or '').split())}\n" for n in names)
        query = "&".join(sorted(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                                for k, vs in req.query.items() for v in vs))
        canonical = "\n".join([req.method, quote(req.path or "/", safe="/-_.~"), query, canonical_headers, signed,
                               hashlib.sha256(req.body).hexdigest()])
        scope = f"{day}/{region}/{service}/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + c.aws_secret_access_key).encode()
        for part in (day, region, service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        if "host" not in names or not hmac.compare_digest(expected, signature):
            return error(403, "com.amazon.coral.service#SignatureDoesNotMatch", "SignatureDoesNotMatch",
                         "The request signature we calculated does not match the signature you provided. Check "
                         "your AWS Secret Access Key and signing method. Consult the service documentation for details.")
        return None

    @staticmethod
    def ok(doc: dict) -> Response:
        return Response(200, json.dumps(doc).encode(), {"Content-Type": CONTENT_TYPE,
                                                        "x-amzn-RequestId": str(uuid.uuid4())})

    def url(self, req, name: str) -> str:
        return f"{req.base_url}/{self.sb.credentials.aws_account_id}/{name}"

    def _queue(self, body: dict):
        name = str(body.get("QueueUrl") or "").rstrip("/").rsplit("/", 1)[-1]
        q = self.queues.get(name)
        if q is None:
            return None, error(400, "com.amazonaws.sqs#QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
                               "The specified queue does not exist.")
        return q, None

    def create_queue(self, req, body: dict) -> Response:
        name = body.get("QueueName") or ""
        if not _NAME.match(name):
            return error(400, "com.amazonaws.sqs#InvalidAttributeName", "InvalidParameterValue",
                         "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
        self.ensure(name, body.get("Attributes"))
        return self.ok({"QueueUrl": self.url(req, name)})

    def get_queue_url(self, req, body: dict) -> Response:
        name = body.get("QueueName") or ""
        if name not in self.queues:
            return error(400, "com.amazonaws.sqs#QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
                         "The specified queue does not exist.")
        return self.ok({"QueueUrl": self.url(req, name)})

    def get_queue_attributes(self, req, body: dict) -> Response:
        q, err = self._queue(body)
        if err:
            return err
        now = self.sb.clock.monotonic()
        with self.cond:
            attrs = dict(q.attributes, QueueArn=self.arn(q.name), CreatedTimestamp=str(q.created_s),
                         ApproximateNumberOfMessages=str(sum(1 for m in q.messages if m.visible_at <= now)),
                         ApproximateNumberOfMessagesNotVisible=str(sum(1 for m in q.messages if m.visible_at > now)))
        wanted = body.get("AttributeNames") or []
        if "All" not in wanted:
            attrs = {k: v for k, v in attrs.items() if k in wanted}
        return self.ok({"Attributes": attrs})

    def send_message(self, req, body: dict) -> Response:
        q, err = self._queue(body)
        if err:
            return err
        text = str(body.get("MessageBody") or "")
        mid = self.send(q.name, text)
        return self.ok({"MessageId": mid, "MD5OfMessageBody": hashlib.md5(text.encode()).hexdigest()})

    def receive(self, req, body: dict) -> Response:
        q, err = self._queue(body)
        if err:
            return err
        n = int(body.get("MaxNumberOfMessages") or 1)
        wait = int(body.get("WaitTimeSeconds", q.attributes.get("ReceiveMessageWaitTimeSeconds", 0)))
        if not 1 <= n <= MAX_MESSAGES or not 0 <= wait <= MAX_WAIT_S:
            return error(400, "com.amazonaws.sqs#InvalidParameterValue", "InvalidParameterValue",
                         "Value for parameter MaxNumberOfMessages/WaitTimeSeconds is invalid.")
        vt = int(body.get("VisibilityTimeout", q.attributes["VisibilityTimeout"]))
        names = set(body.get("AttributeNames") or []) | set(body.get("MessageSystemAttributeNames") or [])
        clock = self.sb.clock
        deadline = clock.monotonic() + clock.scaled(wait)
        with self.cond:
            while True:
                now = clock.monotonic()
                ready = [m for m in q.messages if m.visible_at <= now][:n]
                if ready or now >= deadline:
                    break
                upcoming = [m.visible_at for m in q.messages if m.visible_at > now]
                clock.wait(self.cond, min([deadline] + upcoming) - now)
            out = []
            for m in ready:
                m.receive_count += 1
                now_ms = int(clock.now().timestamp() * 1000)
                m.first_receive_ms = m.first_receive_ms or now_ms
                m.visible_at = now + clock.scaled(vt)
                handle = secrets.token_urlsafe(48)
                m.handles.add(handle)
                item = {"MessageId": m.id, "ReceiptHandle": handle, "MD5OfBody": hashlib.md5(m.body.encode()).hexdigest(),
                        "Body": m.body}
                attrs = {"ApproximateReceiveCount": str(m.receive_count), "SentTimestamp": str(m.sent_ms),
                         "ApproximateFirstReceiveTimestamp": str(m.first_receive_ms), "SenderId": "AIDASANDBOXSPAPI"}
                if "All" not in names:
                    attrs = {k: v for k, v in attrs.items() if k in names}
                if attrs:
                    item["Attributes"] = attrs
                out.append(item)
        return self.ok({"Messages": out} if out else {})

    def _by_handle(self, q: Queue, handle: str):
        return next((m for m in q.messages if handle in m.handles), None)

    def delete(self, req, body: dict) -> Response:
        q, err = self._queue(body)
        if err:
            return err
        with self.cond:
            m = self._by_handle(q, str(body.get("ReceiptHandle") or ""))
            if m is None and not str(body.get("ReceiptHandle") or ""):
                return error(400, "com.amazonaws.sqs#ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid",
                             "The input receipt handle is invalid.")
            if m is not None:
                q.messages.remove(m)
        return self.ok({})

    def change_visibility(self, req, body: dict) -> Response:
        q, err = self._queue(body)
        if err:
            return err
        vt = int(body.get("VisibilityTimeout", 0))
        if not 0 <= vt <= 43200:
            return error(400, "com.amazonaws.sqs#InvalidParameterValue", "InvalidParameterValue",
                         "Value for parameter VisibilityTimeout is invalid.")
        with self.cond:
            m = self._by_handle(q, str(body.get("ReceiptHandle") or ""))
            if m is None:
                return error(400, "com.amazonaws.sqs#ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid",
                             "The input receipt handle is invalid.")
            now = self.sb.clock.monotonic()
            if m.visible_at <= now:
                return error(400, "com.amazonaws.sqs#MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight",
                             "The message referred to isn't in flight.")
            m.visible_at = now + self.sb.clock.scaled(vt)
            self.cond.notify_all()
        return self.ok({})
