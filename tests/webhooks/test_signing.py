"""Standard Webhooks signatures: published and hand-computed vectors, and the `standardwebhooks` package as the
receiver's verifier (it checks the timestamp against the real clock, so those tests sign at the present)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.webhooks import signing

BODY = b'{"id":"evt_1","type":"usage.threshold","data":{"account_id":"acct_1"}}'
# Bytes 0..31 as a secret; the expected signature below was computed with openssl, not with this code.
COUNTING_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_the_published_standard_webhooks_vector_signs_to_its_published_signature() -> None:
    # The test vector of the standardwebhooks libraries (and of Svix's documentation).
    signature = signing.sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_fixed_secret_id_timestamp_and_body_sign_to_the_hmac_written_out() -> None:
    body = b'{"type":"usage.threshold"}'
    key = bytes(range(32))
    by_hand = base64.b64encode(hmac.new(key, b"evt_1.1790000000." + body, hashlib.sha256).digest()).decode()

    signature = signing.sign(COUNTING_SECRET, "evt_1", 1_790_000_000, body)

    assert signature == "v1,wCFcIuz5Q4pDnwgpk9aWUAGbw4MuKCSSuXxr8OkQXCY="
    assert signature == "v1," + by_hand


def test_headers_carry_the_id_the_timestamp_in_seconds_and_one_signature() -> None:
    assert signing.headers(COUNTING_SECRET, "evt_1", 1_790_000_000, b'{"type":"usage.threshold"}') == {
        "webhook-id": "evt_1",
        "webhook-timestamp": "1790000000",
        "webhook-signature": "v1,wCFcIuz5Q4pDnwgpk9aWUAGbw4MuKCSSuXxr8OkQXCY=",
    }


def test_two_secrets_give_two_space_separated_signatures_new_first() -> None:
    published = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sent = signing.headers([COUNTING_SECRET, published], "evt_1", 1_790_000_000, b'{"type":"usage.threshold"}')
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    by_hand = base64.b64encode(
        hmac.new(key, b'evt_1.1790000000.{"type":"usage.threshold"}', hashlib.sha256).digest()
    ).decode()
    assert sent["webhook-signature"] == f"v1,wCFcIuz5Q4pDnwgpk9aWUAGbw4MuKCSSuXxr8OkQXCY= v1,{by_hand}"


def test_a_new_secret_is_whsec_and_base64_of_32_bytes_and_never_repeats() -> None:
    made = {signing.new_secret() for _ in range(100)}
    assert len(made) == 100
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_the_standardwebhooks_package_verifies_what_we_send() -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "evt_2Kw", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, sent) == {
        "id": "evt_1",
        "type": "usage.threshold",
        "data": {"account_id": "acct_1"},
    }


@pytest.mark.parametrize("receiver_holds", ["new", "old"])
def test_during_a_rotation_a_receiver_holding_either_secret_verifies(receiver_holds: str) -> None:
    new, old = signing.new_secret(), signing.new_secret()
    sent = signing.headers([new, old], "evt_2Kw", int(time.time()), BODY)
    Webhook(new if receiver_holds == "new" else old).verify(BODY, sent, json_parse=False)


def test_a_receiver_holding_neither_rotation_secret_rejects() -> None:
    sent = signing.headers([signing.new_secret(), signing.new_secret()], "evt_2Kw", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, sent, json_parse=False)


def test_a_tampered_body_fails_verification() -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "evt_2Kw", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"acct_1", b"acct_2"), sent, json_parse=False)


def test_a_tampered_timestamp_fails_verification() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    sent = signing.headers(secret, "evt_2Kw", now, BODY)
    sent["webhook-timestamp"] = str(now - 1)  # still inside the package's 5-minute tolerance
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, sent, json_parse=False)


def test_a_tampered_id_fails_verification() -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "evt_2Kw", int(time.time()), BODY)
    sent["webhook-id"] = "evt_2Kx"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, sent, json_parse=False)


@pytest.mark.parametrize(
    "secret",
    ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!", "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
)
def test_a_secret_without_the_prefix_or_base64_key_is_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        signing.sign(secret, "evt_1", 1_790_000_000, BODY)


@pytest.mark.parametrize("msg_id", ["", "evt.1"])
def test_an_empty_id_or_one_with_a_full_stop_is_refused(msg_id: str) -> None:
    with pytest.raises(ValueError):
        signing.sign(COUNTING_SECRET, msg_id, 1_790_000_000, BODY)


def test_headers_without_any_secret_are_refused() -> None:
    with pytest.raises(ValueError):
        signing.headers([], "evt_1", 1_790_000_000, BODY)
