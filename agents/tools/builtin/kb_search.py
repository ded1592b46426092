"""The kb_search built-in: BM25 search of the tenant's knowledge base."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from django.db.models import Q

from agents.choices import Risk
from agents.models import KnowledgeDocument
from agents.tools.base import ToolContext
from agents.tools.builtin.spec import BuiltinSpec

MAX_QUERY_TERMS = 20
MAX_CANDIDATES = 5000
_STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by do does for from how i in is it of on or the to what when "
        "where which who why with you your",
    )
)
_WORD = re.compile(r"\w+")


def _stem(word: str) -> str:
    # Plural "s" only: enough for "refunds" to find "refund", never a wrong merge of words.
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text`` with a trailing plural s removed."""
    return [_stem(w) for w in _WORD.findall(text.lower())]


def _snippet(content: str, terms: list[str], width: int = 240) -> str:
    lowered = content.lower()
    positions = [p for p in (lowered.find(t) for t in terms) if p >= 0]
    start = max(0, min(positions) - width // 3) if positions else 0
    piece = " ".join(content[start : start + width].split())
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + width < len(content) else ""
    return f"{prefix}{piece}{suffix}"


def kb_search(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The ``top_k`` documents of the tenant's knowledge base that best match ``query``.

    Scoring is BM25 over words (title words count twice), computed in Python so it
    behaves the same on SQLite and PostgreSQL; the database only narrows the candidates.
    """
    words = list(dict.fromkeys(tokenize(arguments["query"])))
    terms = [w for w in words if w not in _STOP_WORDS] or words
    terms = terms[:MAX_QUERY_TERMS]
    top_k = int(arguments.get("top_k", 5))
    scope = KnowledgeDocument.objects.for_tenant(ctx.tenant)
    if arguments.get("collection"):
        scope = scope.filter(collection=arguments["collection"])
    if not terms:
        return {"results": [], "total": 0}
    matches_any = Q()
    for term in terms:
        matches_any |= Q(title__icontains=term) | Q(content__icontains=term)
    candidates = scope.filter(matches_any).order_by("-updated_at")[:MAX_CANDIDATES]
    docs: list[tuple[KnowledgeDocument, Counter[str], int]] = []
    for doc in candidates:
        ctx.check_deadline()
        counts = Counter(tokenize(doc.content))
        length = sum(counts.values())
        title_counts = Counter(tokenize(doc.title))
        for word, n in title_counts.items():
            counts[word] += 2 * n
        if any(counts[t] for t in terms):
            docs.append((doc, counts, length + 2 * sum(title_counts.values())))
    if not docs:
        return {"results": [], "total": 0}
    total_docs = scope.count()
    average = sum(length for _, _, length in docs) / len(docs) or 1.0
    frequency = {t: sum(1 for _, counts, _ in docs if counts[t]) for t in terms}
    k1, b = 1.2, 0.75
    scored = []
    for doc, counts, length in docs:
        score = 0.0
        for term in terms:
            tf = counts[term]
            if not tf:
                continue
            df = frequency[term]
            idf = math.log(1 + (total_docs - df + 0.5) / (df + 0.5))
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))
        scored.append((score, doc))
    scored.sort(key=lambda pair: (-pair[0], pair[1].title, pair[1].pk))
    return {
        "results": [
            {
                "id": doc.pk,
                "title": doc.title,
                "collection": doc.collection,
                "tags": doc.tags,
                "score": round(score, 4),
                "snippet": _snippet(doc.content, terms),
            }
            for score, doc in scored[:top_k]
        ],
        "total": len(scored),
    }


KB_SEARCH_INPUT = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 500},
        "collection": {"type": "string", "maxLength": 50},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
    },
    "required": ["query"],
    "additionalProperties": False,
}
KB_SEARCH_OUTPUT = {
    "type": "object",
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "title": {"type": "string"},
                    "collection": {"type": "string"},
                    "tags": {"type": "array"},
                    "score": {"type": "number"},
                    "snippet": {"type": "string"},
                },
                "required": ["id", "title", "collection", "score", "snippet"],
            },
        },
        "total": {"type": "integer"},
    },
    "required": ["results", "total"],
}


SPEC = BuiltinSpec(
    name="kb_search",
    description="Search the tenant's knowledge base and return the best-matching "
    "documents with scores and snippets.",
    input_schema=KB_SEARCH_INPUT,
    output_schema=KB_SEARCH_OUTPUT,
    risk=Risk.READ,
    fn=kb_search,
)
