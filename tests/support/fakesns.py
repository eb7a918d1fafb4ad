"""A fake Amazon SNS on loopback, over real HTTPS: it holds a signing key and serves its
certificate (as sns.<region>.amazonaws.com serves SimpleNotificationService-*.pem),
answers SubscribeURL visits, and builds HTTP(S) deliveries as SNS sends them: the
envelope of https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html, its
headers, text/plain, signed with SignatureVersion 1 (SHA1withRSA) or 2 (SHA256withRSA)."""

from __future__ import annotations

import base64
import ssl
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support.net import free_port

TOPIC = "arn:aws:sns:us-west-2:123456789012:cloudwatch-alarms"


def sns_string_to_sign(env: dict[str, Any]) -> bytes:
    """As AWS documents it (written here apart from the proxy's own): for a Notification,
    Message, MessageId, Subject (if present), Timestamp, TopicArn, Type; for the
    (un)subscription confirmations, Message, MessageId, SubscribeURL, Timestamp, Token,
    TopicArn, Type; each as "name\nvalue\n"."""
    names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] \
        if env["Type"] == "Notification" else \
        ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return b"".join(f"{n}\n{env[n]}\n".encode() for n in names if n in env)


def signing_cert(key: rsa.RSAPrivateKey, days: int = 30) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-west-2.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class FakeSNS:
    def __init__(self, tmp: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert_pem = signing_cert(self.key)
        self.ca = trustme.CA()
        self.ca_file = tmp / "sns-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.confirmed: list[str] = []  # tokens of visited SubscribeURLs
        self.cert_fetches = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/SimpleNotificationService-test.pem", self._cert)
        app.router.add_get("/", self._confirm)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(ctx)
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ctx).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _cert(self, _request: web.Request) -> web.Response:
        self.cert_fetches += 1
        return web.Response(body=self.cert_pem, content_type="application/x-x509-ca-cert")

    async def _confirm(self, request: web.Request) -> web.Response:
        if request.query.get("Action") != "ConfirmSubscription":
            return web.Response(status=400)
        self.confirmed.append(request.query["Token"])
        return web.Response(body=b"<ConfirmSubscriptionResponse/>", content_type="text/xml")

    def message(self, kind: str, message: str, subject: str | None = None, version: str = "1",
                topic: str = TOPIC, key: rsa.RSAPrivateKey | None = None,
                timestamp: datetime | None = None, cert_url: str | None = None) -> dict[str, Any]:
        """An SNS delivery body of type `kind`, signed (by `key`, or SNS's own)."""
        env: dict[str, Any] = {
            "Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": topic, "Message": message,
            "Timestamp": (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or f"{self.base}/SimpleNotificationService-test.pem",
        }
        if kind == "Notification":
            if subject is not None:
                env["Subject"] = subject
            env["UnsubscribeURL"] = f"{self.base}/?Action=Unsubscribe&SubscriptionArn={topic}:sub-1"
        else:
            token = uuid.uuid4().hex * 4
            env["Token"] = token
            env["SubscribeURL"] = f"{self.base}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        env["Signature"] = base64.b64encode((key or self.key).sign(
            sns_string_to_sign(env), padding.PKCS1v15(), digest)).decode()
        return env

    @staticmethod
    def headers(env: dict[str, Any]) -> dict[str, str]:
        """The headers SNS sends with a delivery."""
        return {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": env["Type"],
                "x-amz-sns-message-id": env["MessageId"], "x-amz-sns-topic-arn": env["TopicArn"],
                "User-Agent": "Amazon Simple Notification Service Agent"}

    @staticmethod
    def body(env: dict[str, Any]) -> bytes:
        return orjson.dumps(env)
