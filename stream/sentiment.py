"""Customer sentiment scoring behind a small interface: language → scorer(text) → −1…1.

The default is VADER (vaderSentiment, offline, English); other languages have no scorer
unless one is plugged in, so their messages are counted but not scored. A user adds one with
`register("de", my_scorer)` in a module named by CCPULSE_SENTIMENT_PLUGIN (imported at start).
Scores are cached by text, because chat and SMS repeat a lot of short texts.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from typing import Callable

from .config import Settings

TextScorer = Callable[[str], float]
_registry: dict[str, TextScorer] = {}
MAX_TEXT = 4000


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

    @lru_cache(maxsize=65536)
    def cached(language: str, text: str) -> float | None:
        scorer = _registry.get(language.split("-", 1)[0].lower())
        if scorer is None or not text.strip():
            return None
        value = scorer(text)
        return max(-1.0, min(1.0, value))

    def score(text: str, language: str) -> float | None:
        return cached(language or "en", text)

    return score
