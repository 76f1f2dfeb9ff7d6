"""Credential masking: mask_url on one URL, scrub on prose, and classify's messages never show a secret."""

from __future__ import annotations

import pytest

from stream.sources import InvalidSource, classify, describe_source, mask_url, scrub

# (URL, its secret, what mask_url shows). Every password spelling from issue 10.
PASSWORDS = [
    ("rtsp://admin:it'sme99@cam.local/live", "it'sme99", "rtsp://admin:***@cam.local/live"),
    ('rtsp://admin:say"hi"9@cam.local/live', 'say"hi"9', "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:a<b>c9@cam.local:554/s", "a<b>c9", "rtsp://admin:***@cam.local:554/s"),
    ("rtsp://admin:wh?at9@cam.local/live", "wh?at9", "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:ha#sh9@cam.local/live", "ha#sh9", "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:sl/ash9@cam.local/live", "sl/ash9", "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:my pass9@cam.local/live", "my pass9", "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:p@ss9@cam.local/live", "p@ss9", "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:p%40ss9@cam.local/live", "p%40ss9", "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:co:lon9@cam.local/live", "co:lon9", "rtsp://admin:***@cam.local/live"),
    ("rtsp://admin:mix'?#/@ 9@cam.local/live", "mix'?#/@ 9", "rtsp://admin:***@cam.local/live"),
    ("https://SECRETTOKEN9@cam.local/x", "SECRETTOKEN9", "https://***@cam.local/x"),
    ("rtsp://to/ken9@cam.local/x", "to/ken9", "rtsp://***@cam.local/x"),
]
# (URL, its secret, what mask_url shows): secrets in the query or fragment.
QUERIES = [
    ("http://h/live.m3u8?token=abc123&q=1", "abc123", "http://h/live.m3u8?token=***&q=1"),
    ("https://h/v.m3u8?secret=S3cr3t", "S3cr3t", "https://h/v.m3u8?secret=***"),
    ("https://h/v.m3u8?a=1&sig=S1gn4", "S1gn4", "https://h/v.m3u8?a=1&sig=***"),
    (
        "https://bucket.s3.example/o.mp4?X-Amz-Credential=AKIA9&X-Amz-Signature=ab12cd&X-Amz-Security-Token=tok9",
        "ab12cd",
        "https://bucket.s3.example/o.mp4?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***",
    ),
    ("https://g.example/o?X-Goog-Signature=99beef", "99beef", "https://g.example/o?X-Goog-Signature=***"),
    ("https://h/v?API_KEY=k3y9&PassWord=pw9", "k3y9", "https://h/v?API_KEY=***&PassWord=***"),
    ("http://h/x#access_token=fr4g", "fr4g", "http://h/x#access_token=***"),
]
ALL = PASSWORDS + QUERIES


@pytest.mark.parametrize(("url", "secret", "shown"), ALL)
def test_mask_url_hides_every_password_and_query_secret(url: str, secret: str, shown: str) -> None:
    """mask_url hides the password (keeping the user name) and secret query values, however they are spelt."""
    masked = mask_url(url)
    assert masked == shown
    assert secret not in masked


@pytest.mark.parametrize(("url", "secret", "shown"), ALL)
@pytest.mark.parametrize(
    "sentence",
    [
        "[Errno 111] Connection refused: '{}'",
        'open "{}" failed: 401 Unauthorized',
        "<{}> timed out; retrying",
        "{}",
        "first rtsp://u:other9@b/x then {} and http://c/d?token=t0k",
    ],
)
def test_scrub_hides_secrets_of_urls_inside_text(url: str, secret: str, shown: str, sentence: str) -> None:
    """scrub masks a URL wherever it sits in a log line or FFmpeg message, whatever its password holds."""
    text = scrub(sentence.format(url))
    assert secret not in text
    assert "other9" not in text and "t0k" not in text
    if " " not in secret:
        # The host survives, so people can still tell which camera failed.
        assert shown.split("://", 1)[1].split("/")[0] in text


def test_scrub_keeps_plain_text_and_is_idempotent() -> None:
    """Text without credentials is unchanged, and scrubbing masked text again changes nothing."""
    plain = "stream door: reconnecting (no answer from rtsp://cam:554/live within 5 s)"
    assert scrub(plain) == plain
    assert mask_url("rtsp://host:554/x") == "rtsp://host:554/x"
    assert mask_url(0) == "0"
    assert mask_url("/videos/clip.mp4") == "/videos/clip.mp4"
    for url, _, shown in ALL:
        assert mask_url(shown) == shown
        once = scrub(f"malformed URL {mask_url(url)!r}: percent-encode '@' (%40)")
        assert scrub(once) == once
        # A source's reason is built from the masked URL and scrubbed again on its way out:
        # the words after an unquoted URL survive (a query secret's mask ate the colon once).
        reason = f"connection refused by {mask_url(url)}: is the camera or server running?"
        assert scrub(reason) == reason


@pytest.mark.parametrize(("url", "secret", "shown"), PASSWORDS + QUERIES)
def test_classify_messages_never_quote_a_secret(url: str, secret: str, shown: str) -> None:
    """A refused URL's InvalidSource message names the problem without the secret; an accepted one displays masked."""
    try:
        spec = classify(url)
    except InvalidSource as exc:
        assert secret not in str(exc) and str(exc).startswith("malformed URL")
    else:
        assert spec.display == shown


@pytest.mark.parametrize(
    ("url", "secret", "words"),
    [
        ("rtsp://admin:wh?at9@cam/live", "wh?at9", "port is not a number"),
        ("rtsp://admin:ha#sh9@cam/live", "ha#sh9", "port is not a number"),
        ("rtsp://admin:sl/ash9@cam/live", "sl/ash9", "port is not a number"),
        ("rtsp://admin:onlypw9", "onlypw9", "port is not a number"),
        ("rtsp://admin:my pass9@cam/live", "pass9", "spaces"),
        ("rtsp://to/ken9@cam/live", "ken9", "'@' after the host"),
        ("rtsp://[adm:pw9@cam/live", "pw9", "unbalanced"),
        ("rtsp:admin:typo9@cam/live", "typo9", "expected rtsp://host"),
        ("adm:pw9@cam://live", "pw9", "not a scheme"),
        ("ftp://user:topsecret@host/x", "topsecret", "unsupported scheme 'ftp' in ftp://user:***@host/x"),
        ("file://user:filepw9@host/x", "filepw9", "file URLs must be local"),
    ],
)
def test_parser_errors_are_our_words_not_the_parsers(url: str, secret: str, words: str) -> None:
    """urlsplit's ValueError quotes the netloc: classify says what is wrong in its own words, without the secret."""
    with pytest.raises(InvalidSource) as info:
        classify(url)
    message = str(info.value)
    assert words in message
    assert secret not in message and "could not be cast" not in message
    kind, shown = describe_source(url)
    assert kind == "invalid" and secret not in shown


def test_an_encoded_password_is_a_valid_url() -> None:
    """Percent-encoding the special characters, as the messages advise, makes the URL acceptable."""
    spec = classify("rtsp://admin:wh%3Fat%23sl%2Fash%40%20@cam:554/live")
    assert spec.target == "rtsp://admin:wh%3Fat%23sl%2Fash%40%20@cam:554/live"
    assert spec.display == "rtsp://admin:***@cam:554/live"
