"""Stream ids: one rule everywhere, checked on the whole string (no trailing newline, no '.' or '..')."""

from __future__ import annotations

import json
import re

import pytest

from stream.config import ConfigError, validate_config
from stream.ids import STREAM_ID_PATTERN, is_valid_stream_id
from stream.server.main import parse_source
from stream.server.protocol import ProtocolError, parse_add_stream, parse_webrtc_offer

BAD_IDS = ["door\n", "door\r\n", "\ndoor", ".", "..", ".hidden", "-door", "a b", "door/1", "x" * 65, "", "caf\u00e9", "door\x00"]
GOOD_IDS = ["door", "cam0", "_x", "a.b-c_d", "0", "x" * 64, "door.."]


@pytest.mark.parametrize("value", GOOD_IDS)
def test_good_ids_pass(value):
    """Letters, digits, '_', '-', '.' up to 64, not starting with '.' or '-', are ids."""
    assert is_valid_stream_id(value)


@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_ids_are_refused_everywhere(value):
    """A trailing newline, '.', '..' and other bad ids are refused by REST, WebRTC offers and the config."""
    assert not is_valid_stream_id(value)
    with pytest.raises(ProtocolError, match="'id' must be"):
        parse_add_stream(f'{{"url": "rtsp://127.0.0.1:9/x", "id": {json.dumps(value)}}}')
    with pytest.raises(ProtocolError, match="'id' must be"):
        parse_webrtc_offer(f'{{"sdp": "v=0", "type": "offer", "id": {json.dumps(value)}}}')
    with pytest.raises(ConfigError, match=r"sources\.0\.id"):
        validate_config({"sources": [{"url": "rtsp://127.0.0.1:9/x", "id": value}]})


def test_schema_pattern_matches_the_rule():
    """The pattern published in the OpenAPI schema agrees with the code on every example."""
    for value in GOOD_IDS:
        assert re.fullmatch(STREAM_ID_PATTERN.strip("^$"), value)
    for value in BAD_IDS:
        assert not re.fullmatch(STREAM_ID_PATTERN.strip("^$"), value)


def test_source_flag_name_prefix_uses_the_same_rule():
    """--source '.=rtsp://...' is not a name prefix; 'door=rtsp://...' is."""
    assert parse_source("door=rtsp://127.0.0.1/x") == {"id": "door", "url": "rtsp://127.0.0.1/x"}
    assert "id" not in parse_source("..=rtsp://127.0.0.1/x")


def test_config_with_more_sources_than_max_streams_is_refused():
    """server.max_streams bounds configured sources too: the error gives both numbers and no config contents."""
    sources = [{"id": f"c{i}", "url": f"rtsp://admin:hunter2@127.0.0.1:9/{i}"} for i in range(3)]
    with pytest.raises(ConfigError) as err:
        validate_config({"sources": sources, "server": {"max_streams": 2}})
    message = str(err.value)
    assert "3 sources" in message and "server.max_streams is 2" in message
    assert "hunter2" not in message
    assert validate_config({"sources": sources, "server": {"max_streams": 3}}).server.max_streams == 3
