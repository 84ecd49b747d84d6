"""Customer sentiment scoring behind a small interface: language → scorer(text) → −1…1.

The default is VADER (vaderSentiment, offline, English); other languages have no scorer
unless one is plugged in, so their messages are counted but not scored. A user adds one with
`register("de", my_scorer)` in a module named by CCPULSE_SENTIMENT_PLUGIN (imported at start).
Scores are cached by a digest of the text (chat and SMS repeat many short texts); the
text itself is never kept.
"""

from __future__ import annotations

import importlib
import os
import hashlib
from typing import Callable

from .config import Settings

TextScorer = Callable[[str], float]
_registry: dict[str, TextScorer] = {}
MAX_TEXT = 4000
CACHE_SIZE = 65536


def register(language: str, scorer: TextScorer) -> None:
    """Plug in a scorer for a language (primary subtag, e.g. 'de')."""
    _registry[language.lower()] = scorer


def vader_scorer() -> TextScorer:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def score(text: str) -> float:
        return float(analyzer.polarity_scores(text[:MAX_TEXT])["compound"])

    return score


def default_scorer(cfg: Settings | None = None) -> Callable[[str, str], float | None]:
    if "en" not in _registry:
        register("en", vader_scorer())
    plugin = os.environ.get("CCPULSE_SENTIMENT_PLUGIN")
    if plugin:
        importlib.import_module(plugin)

    cache: dict[bytes, float | None] = {}

    def score(text: str, language: str) -> float | None:
        # the cache is keyed by a digest, so no message text stays in memory after scoring
        key = hashlib.blake2b(f"{language}\0{text}".encode(), digest_size=16).digest()
        if key in cache:
            return cache[key]
        scorer = _registry.get((language or "en").split("-", 1)[0].lower())
        value = None if scorer is None or not text.strip() else max(-1.0, min(1.0, scorer(text)))
        if len(cache) >= CACHE_SIZE:
            cache.clear()  # bounded; repeated texts refill it within moments
        cache[key] = value
        return value

    return score
