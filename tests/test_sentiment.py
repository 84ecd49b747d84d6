"""Sentiment scoring, per-interaction start/end, and at-risk contacts (pure, no I/O)."""

from __future__ import annotations

import orjson
import pytest

from stream import config, sentiment
from stream.kpi import buckets as b
from stream.kpi import metrics
from stream.kpi.engine import Engine
from stream.kpi.windows import iso_utc, parse_iso

T0 = parse_iso("2026-11-23T10:00:00Z")


@pytest.fixture(scope="module")
def score():
    return sentiment.default_scorer()


def test_known_sentences_have_the_expected_sign_and_order(score):
    positive = score("Thank you so much, this was great and really helpful!", "en")
    neutral = score("I am calling about my account.", "en")
    negative = score("This is terrible, I am furious and want to cancel.", "en")
    assert positive > 0.5 and negative < -0.5 and abs(neutral) < 0.05
    assert positive > neutral > negative


def test_edge_texts(score):
    assert score("", "en") is None and score("   ", "en") is None
    long = "great service " * 2000  # longer than the 4,000-char limit: scored on a prefix
    assert 0 < score(long, "en") <= 1
    assert score("😡😡😡", "en") <= 0 and score("😍🙏", "en") > 0  # VADER maps emoji to words
    assert score("Das ist schrecklich", "de") is None  # no German scorer configured
    assert score("terrible", "en-GB") < 0  # region subtags use the language's scorer


def test_a_plugged_in_scorer_is_used_for_its_language():
    sentiment.register("xx", lambda text: -2.0 if "bad" in text else 0.25)
    try:
        s = sentiment.default_scorer()
        assert s("bad", "xx") == -1.0  # clamped to −1…1
        assert s("fine", "xx-YY") == 0.25
    finally:
        sentiment._registry.pop("xx", None)


def msg(iid, ts, text, direction="customer", n=[0]):
    n[0] += 1
    return orjson.dumps({"event_id": f"{iid}-m{n[0]}", "type": "interaction.message",
                         "ts": iso_utc(ts), "schema_version": 1, "interaction_id": iid,
                         "channel": "chat", "queue": "support", "direction": direction,
                         "text": text})


def ev(iid, kind, ts, **extra):
    return orjson.dumps({"event_id": f"{iid}-{kind}", "type": f"interaction.{kind}",
                         "ts": iso_utc(ts), "schema_version": 1, "interaction_id": iid,
                         "channel": "chat", "queue": "support", **extra})


SCORES = {"s-2": -0.9, "s-1": -0.6, "s0": 0.0, "s1": 0.4, "s2": 0.8, "edge": -0.05}


def engine() -> Engine:
    return Engine(config.load(environ={}), scorer=lambda text, lang: SCORES[text])


def test_start_end_and_change_hand_vector():
    e = engine()
    e.ingest("interactions", ev("a", "offered", T0), 0)
    e.ingest("interactions", ev("a", "answered", T0 + 10, agent_id="x"), 0)
    for i, text in enumerate(["s-2", "s-1", "s0", "s1", "s2"]):
        e.ingest("interactions", msg("a", T0 + 20 + i, text), 0)
    e.ingest("interactions", msg("a", T0 + 30, "s-2", direction="agent"), 0)  # agents don't count
    e.ingest("interactions", ev("a", "ended", T0 + 60, agent_id="x"), 0)
    e.ingest("interactions", ev("a", "wrapup_completed", T0 + 70, agent_id="x",
                                disposition="resolved"), 0)
    e.advance(T0 + 80)
    acc = e.windows(T0 + 80)[("queue:support", "15m")]
    # start = mean(-0.9, -0.6, 0.0) = -0.5 ; end = mean(0.0, 0.4, 0.8) = 0.4
    assert acc[b.SENT_SAMPLES] == 1 and acc[b.SENT_END_SUM] == pytest.approx(0.4)
    k = metrics.kpis(acc)
    assert k["sentiment"] == pytest.approx(0.4) and k["sentiment_improved"] == 1.0
    assert k["sentiment_negative"] == 0.0


def test_negative_share_at_the_edge():
    e = engine()
    for iid, text in (("p", "edge"), ("q", "s0")):
        e.ingest("interactions", ev(iid, "offered", T0), 0)
        e.ingest("interactions", ev(iid, "answered", T0 + 1, agent_id="x"), 0)
        e.ingest("interactions", msg(iid, T0 + 2, text), 0)
        e.ingest("interactions", ev(iid, "ended", T0 + 3, agent_id="x"), 0)
        e.ingest("interactions", ev(iid, "wrapup_completed", T0 + 4, agent_id="x",
                                    disposition="resolved"), 0)
    e.advance(T0 + 10)
    k = metrics.kpis(e.windows(T0 + 10)[("center", "15m")])
    assert k["sentiment_samples"] == 2
    assert k["sentiment_negative"] == pytest.approx(0.5)  # −0.05 counts as negative, 0.0 not


def test_at_risk_enters_recovers_and_leaves_when_the_contact_ends():
    e = engine()
    e.ingest("interactions", ev("r", "offered", T0), 0)
    e.ingest("interactions", ev("r", "answered", T0 + 5, agent_id="x"), 0)
    e.ingest("interactions", msg("r", T0 + 10, "s0"), 0)
    assert e.live(T0 + 11).at_risk == []
    e.ingest("interactions", msg("r", T0 + 20, "s-2"), 0)
    e.ingest("interactions", msg("r", T0 + 30, "s-1"), 0)  # last three: mean −0.5 → at risk
    risky = e.live(T0 + 31).at_risk
    assert [(r[0], r[1], r[2]) for r in risky] == [("r", "support", "x")]
    assert risky[0][3] == pytest.approx(-0.5) and risky[0][4] == T0 + 30
    e.ingest("interactions", msg("r", T0 + 40, "s2"), 0)  # recovers: mean(-0.9,-0.6,0.8) > −0.5
    assert e.live(T0 + 41).at_risk == []
    e.ingest("interactions", msg("r", T0 + 50, "s-2"), 0)
    e.ingest("interactions", msg("r", T0 + 51, "s-2"), 0)
    assert e.live(T0 + 52).at_risk == []  # mean(0.8, -0.9, -0.9) = -0.33: not yet
    e.ingest("interactions", msg("r", T0 + 52, "s-2"), 0)
    risky = e.live(T0 + 53).at_risk
    assert len(risky) == 1 and risky[0][4] == T0 + 52  # re-entered: "since" starts again
    e.ingest("interactions", ev("r", "ended", T0 + 60, agent_id="x"), 0)
    e.ingest("interactions", ev("r", "wrapup_completed", T0 + 61, agent_id="x",
                                disposition="resolved"), 0)
    assert e.live(T0 + 62).at_risk == []  # ended: off the list
