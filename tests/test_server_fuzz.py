"""Property-based fuzzing of the MRD server's parser/session: random and mutated byte streams never
crash it; every stream ends in either images + CLOSE or one TEXT error + CLOSE. Mostly in-process on
BytesIO (fast), plus a handful over real loopback sockets with a correct client afterwards."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gadget.mrd_server import MRDServer, ServerConfig, session_from_bytes
from test_server_support import MRDClient, make_scan, parse_reply, stream_bytes

DEFAULTS = {"method": "zerofilled", "max_matrix": "64"}
_SCAN = make_scan(n=16, coils=2, acs=8)
VALID = stream_bytes(_SCAN[0], _SCAN[1])
PREFIX = stream_bytes(_SCAN[0], [], close=False)
IDS = [1, 2, 3, 4, 5, 1008, 1022, 1026, 0, 7, 65535]


def _check(data: bytes):
    res, out = session_from_bytes(data, defaults=DEFAULTS)
    images, texts, closed = parse_reply(out)
    assert closed, "the server always ends with CLOSE"
    if res.outcome == "ok":
        assert not texts
    else:
        # slices completed before the damage may already have been sent; then exactly one error TEXT
        assert len(texts) == 1 and texts[0].startswith("contextmri error")
        assert len(images) <= 1
    return res


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(data):
    _check(data)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(IDS), st.binary(max_size=400)), max_size=8))
def test_valid_prefix_then_random_messages(msgs):
    _check(PREFIX + b"".join(struct.pack("<H", mid) + body for mid, body in msgs))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(VALID)))
def test_mutated_valid_stream(flips, cut):
    data = bytearray(VALID)
    for pos, val in flips:
        data[pos] = val
    _check(bytes(data[:max(cut, 1)]) if cut < len(VALID) // 8 else bytes(data))


def test_unmutated_stream_is_ok():
    assert _check(VALID).outcome == "ok"


def test_random_streams_over_sockets_then_correct_client():
    rng = np.random.default_rng(0)
    srv = MRDServer(ServerConfig(port=0, workers=1, defaults=DEFAULTS, timeout=10)).start()
    try:
        for i in range(6):
            blob = rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
            if i % 2:
                blob = PREFIX + blob
            c = MRDClient(srv.address, timeout=20)
            c.send(blob)
            images, texts, closed = c.result(20)
            assert not images and len(texts) == 1
        c = MRDClient(srv.address, timeout=20)
        c.send(VALID)
        images, texts, closed = c.result(20)
        assert closed and not texts and len(images) == 1
    finally:
        srv.shutdown()
