"""Amazon SNS deliveries to an HTTP(S) subscription: nothing in the envelope is believed
before its signature verifies.

  1. the envelope has the fields its Type needs (Notification, SubscriptionConfirmation,
     UnsubscribeConfirmation), and the x-amz-sns-message-type header agrees;
  2. its TopicArn is one the source takes (`sns.topics`): SNS signs every account's
     messages, so the signature alone does not say the topic is ours;
  3. SigningCertURL is https on an allowed host (`sns.cert_hosts`, by default
     sns.<region>.amazonaws.com) and ends in .pem; the certificate is fetched over
     verified TLS, cached, and must be within its validity dates;
  4. the signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) verifies over the
     string to sign AWS documents (each field as "Name\\nvalue\\n", in name order);
  5. the message is not older than `sns.max_age` (a replay).

A verified SubscriptionConfirmation is confirmed by visiting its SubscribeURL (on an
allowed host too), unless `sns.confirm` is false.
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import logging
import re
import ssl
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from proxy.errors import InputError, Unauthorized, Upstream
from proxy.ingest.webhook import SnsSettings

__all__ = ["SnsVerifier", "envelope", "string_to_sign"]

log = logging.getLogger("alert_proxy")

_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
}
_SIGNED["UnsubscribeConfirmation"] = _SIGNED["SubscriptionConfirmation"]
_OPTIONAL = ("Subject",)
_CACHE_SIZE = 64
_CACHE_TTL = 24 * 3600.0
_FETCH_TIMEOUT = 10.0
_MAX_CERT = 64 * 1024


def envelope(body: Any, header_type: str | None) -> dict[str, str]:
    """The SNS envelope's fields, checked: InputError (400) naming what is wrong."""
    if not isinstance(body, dict):
        raise InputError(["body must be an Amazon SNS message (a JSON object)"])
    kind = body.get("Type")
    if not isinstance(kind, str) or kind not in _SIGNED:
        raise InputError([f"'Type' {kind!r} is not an SNS message type ({', '.join(_SIGNED)})"])
    if header_type is not None and header_type != kind:
        raise InputError([f"x-amz-sns-message-type {header_type!r} does not match 'Type' {kind!r}"])
    needed = (*_SIGNED[kind], "SignatureVersion", "Signature", "SigningCertURL")
    errors = [f"'{k}' is missing or not a string" for k in needed
              if k not in _OPTIONAL and not isinstance(body.get(k), str)]
    if "Subject" in body and not isinstance(body["Subject"], str | None):
        errors.append("'Subject' must be a string")
    if errors:
        raise InputError(errors)
    return {k: v for k, v in body.items() if isinstance(v, str)}


def string_to_sign(env: dict[str, str]) -> bytes:
    """What SNS signed: "Name\\nvalue\\n" for each field of the message's type, in order."""
    return "".join(f"{k}\n{env[k]}\n" for k in _SIGNED[env["Type"]] if k in env).encode()


def _host_pattern(hosts: tuple[str, ...]) -> re.Pattern[str]:
    """`*` is one DNS label: sns.*.amazonaws.com takes sns.eu-west-1.amazonaws.com only."""
    parts = ["\\.".join("[A-Za-z0-9-]+" if p == "*" else re.escape(p) for p in h.split("."))
             for h in hosts]
    return re.compile(f"^(?:{'|'.join(parts)})$")


def _allowed_url(url: str, s: SnsSettings, what: str, suffix: str = "") -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or not _host_pattern(s.cert_hosts).match(host) or \
            not parts.path.endswith(suffix):
        raise InputError([f"'{what}' is not an https URL on an allowed host ({', '.join(s.cert_hosts)}"
                          f"{'; ending in ' + suffix if suffix else ''}): {host or url[:80]!r}"], 403)
    return url


class SnsVerifier:
    """Verifies SNS messages; keeps the signing certificates it fetched (a few, for a day)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, rsa.RSAPublicKey, datetime, datetime]] = {}
        self._fetching: dict[str, asyncio.Task[tuple[rsa.RSAPublicKey, datetime, datetime]]] = {}
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}

    def _session(self, ca_file: str | None) -> aiohttp.ClientSession:
        session = self._sessions.get(ca_file)
        if session is None or session.closed:
            context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=4),
                timeout=aiohttp.ClientTimeout(total=_FETCH_TIMEOUT))
            self._sessions[ca_file] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def verify(self, s: SnsSettings, env: dict[str, str], now: float | None = None) -> None:
        """Raise unless `env` is an SNS message for one of `s.topics`, signed by SNS."""
        topic = env["TopicArn"]
        if not any(fnmatch.fnmatchcase(topic, p) for p in s.topics):
            raise InputError([f"TopicArn {topic!r} is not one this source takes (sns.topics)"], 403)
        if env["SignatureVersion"] not in ("1", "2"):
            raise InputError([f"'SignatureVersion' {env['SignatureVersion']!r} is not 1 or 2"])
        url = _allowed_url(env["SigningCertURL"], s, "SigningCertURL", ".pem")
        try:
            signature = base64.b64decode(env["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise Unauthorized(["'Signature' is not base64"]) from None
        key, not_before, not_after = await self._key(url, s.ca_file)
        at = datetime.fromtimestamp(time.time() if now is None else now, not_after.tzinfo)
        if not not_before <= at <= not_after:
            raise Unauthorized(["the SNS signing certificate is not valid now"])
        # version 1 is SHA1, as SNS still signs by default; version 2 is SHA256
        digest = hashes.SHA1() if env["SignatureVersion"] == "1" else hashes.SHA256()
        try:
            key.verify(signature, string_to_sign(env), padding.PKCS1v15(), digest)
        except InvalidSignature:
            raise Unauthorized(["the SNS message signature does not verify"]) from None
        try:
            sent = datetime.fromisoformat(env["Timestamp"]).timestamp()
        except ValueError:
            raise InputError([f"'Timestamp' {env['Timestamp']!r} is not a time"]) from None
        if (time.time() if now is None else now) - sent > s.max_age:
            raise InputError([f"the message was sent at {env['Timestamp']}, longer ago than "
                              f"sns.max_age ({s.max_age:g} s): refused as a replay"])

    async def _key(self, url: str, ca_file: str | None) -> tuple[rsa.RSAPublicKey, datetime, datetime]:
        cached = self._keys.get(url)
        if cached and time.monotonic() - cached[0] < _CACHE_TTL:
            return cached[1], cached[2], cached[3]
        task = self._fetching.get(url)
        if task is None:  # one fetch per URL, however many messages wait for it
            task = asyncio.ensure_future(self._fetch(url, ca_file))
            self._fetching[url] = task
            task.add_done_callback(lambda _t: self._fetching.pop(url, None))
        key, not_before, not_after = await asyncio.shield(task)
        if len(self._keys) >= _CACHE_SIZE:
            self._keys.pop(next(iter(self._keys)))
        self._keys[url] = (time.monotonic(), key, not_before, not_after)
        return key, not_before, not_after

    async def _fetch(self, url: str, ca_file: str | None) -> tuple[rsa.RSAPublicKey, datetime, datetime]:
        try:
            async with self._session(ca_file).get(url, allow_redirects=False) as r:
                if 400 <= r.status < 500:  # no such certificate: SNS never names one
                    raise Unauthorized([f"SigningCertURL answered HTTP {r.status}: not a "
                                        "certificate SNS serves"])
                if r.status != 200:  # the host is down or busy: SNS retries
                    raise Upstream([f"the SNS signing certificate could not be fetched: HTTP {r.status}"])
                pem = await r.content.read(_MAX_CERT + 1)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Upstream([f"the SNS signing certificate could not be fetched: "
                            f"{type(e).__name__}: {e}"]) from None
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise Unauthorized(["SigningCertURL does not hold a PEM certificate"]) from None
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Unauthorized(["the SNS signing certificate does not hold an RSA key"])
        return key, cert.not_valid_before_utc, cert.not_valid_after_utc

    async def confirm(self, s: SnsSettings, env: dict[str, str]) -> bool:
        """Visit a verified SubscriptionConfirmation's SubscribeURL (unless sns.confirm is
        false); True once confirmed."""
        if not s.confirm:
            log.warning("SNS subscription not confirmed (sns.confirm is false): confirm it in "
                        "the AWS console", extra={"fields": {"topic": env["TopicArn"]}})
            return False
        url = _allowed_url(env["SubscribeURL"], s, "SubscribeURL")
        try:
            async with self._session(s.ca_file).get(url, allow_redirects=False) as r:
                await r.read()
                if 400 <= r.status < 500:
                    raise InputError([f"SNS refused the subscription confirmation: HTTP {r.status} "
                                      "(an expired or wrong token)"])
                if r.status != 200:
                    raise Upstream([f"SNS did not take the subscription confirmation: HTTP {r.status}"])
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Upstream([f"the subscription could not be confirmed: {type(e).__name__}: {e}"]) from None
        log.info("SNS subscription confirmed", extra={"fields": {"topic": env["TopicArn"]}})
        return True
