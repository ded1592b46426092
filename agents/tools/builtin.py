"""Built-in tools: Python functions registered by name in ``BUILTINS``.

Each ``BuiltinSpec`` carries the function's own input and output JSON Schemas (copied onto
a ``Tool`` when it is registered) and its default risk. Functions take ``(arguments, ctx)``
with arguments already validated, and return a JSON object. The ticket tools write a tenant
table and their audit event in one transaction, and honour the call's idempotency key.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import math
import operator
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from agents.choices import Risk, TicketPriority, TicketStatus
from agents.models import KnowledgeDocument, Ticket
from agents.tools.base import ToolContext, ToolError
from agents.tools.http_tool import build_headers, raise_for_status, scrub, send_http
from controlplane.audit.services import audit_record, snapshot


@dataclasses.dataclass(frozen=True)
class BuiltinSpec:
    """A built-in tool: its name, what it does, its schemas, minimum risk and function.

    ``risk`` is the worst the function can do with arguments a model chooses, so it is a
    floor: a tool registered on this built-in may raise it, never lower it (``risk_why``
    says why, in the error an administrator sees when they try).
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    risk: str
    fn: Callable[[dict[str, Any], ToolContext], dict[str, Any]]
    risk_why: str = ""


RISK_ORDER = (Risk.READ, Risk.WRITE, Risk.DESTRUCTIVE)


def risk_rank(risk: str) -> int:
    """read < write < destructive; an unknown value ranks as destructive (fails closed)."""
    return RISK_ORDER.index(risk) if risk in RISK_ORDER else len(RISK_ORDER) - 1


def effective_risk(*, kind: str, builtin: str, risk: str) -> str:
    """The risk policies see for a tool: its registered risk, raised to its built-in's floor.

    Risk follows what a call does, not the name it was registered under: a tool registered
    on ``ticket_update`` as "write" is still destructive.
    """
    spec = BUILTINS.get(builtin) if kind == "builtin" else None
    if spec is not None and risk_rank(spec.risk) > risk_rank(risk):
        return spec.risk
    return risk


# http_request ------------------------------------------------------------------------------

_DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def http_request(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """GET or POST a URL on one of the tool's allowed hosts; the status and the body."""
    tool = ctx.tool
    method = arguments.get("method", "GET")
    headers: dict[str, str] = {
        k: v
        for k, v in (arguments.get("headers") or {}).items()
        if k.lower() not in _DROPPED_HEADERS
    }
    secrets: list[str] = []
    secret_names: set[str] = set()
    if tool is not None:
        configured, secret_names, secrets = build_headers(tool, ctx)
        # Configured headers win: an agent cannot replace the tool's credentials.
        headers = {k: v for k, v in headers.items() if k.lower() not in secret_names}
        headers.update(configured)
    elif ctx.idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    query = arguments.get("query") or {}
    response = send_http(
        method=method,
        url=arguments["url"],
        allowed_hosts=list(tool.allowed_hosts or []) if tool is not None else [],
        headers=headers,
        secret_header_names=secret_names,
        timeout_seconds=float(tool.timeout_seconds if tool is not None else 30),
        deadline=ctx.deadline,
        json_body=arguments.get("body"),
        send_body=method == "POST" and "body" in arguments,
        params=[(k, _query_text(v)) for k, v in query.items()] or None,
    )
    raise_for_status(response, secrets)
    out: dict[str, Any] = {
        "status": response.status,
        "url": response.url,
        "content_type": response.content_type,
    }
    is_json, value = response.parsed_json()
    if is_json:
        out["json"] = scrub(value, secrets)
    else:
        out["text"] = scrub(response.text, secrets)
    return out


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


HTTP_REQUEST_INPUT = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 2000},
        "method": {"enum": ["GET", "POST"], "default": "GET"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "query": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "body": {"description": "JSON body of a POST."},
    },
    "required": ["url"],
    "additionalProperties": False,
}
HTTP_REQUEST_OUTPUT = {
    "type": "object",
    "properties": {
        "status": {"type": "integer"},
        "url": {"type": "string"},
        "content_type": {"type": "string"},
        "json": {},
        "text": {"type": "string"},
    },
    "required": ["status", "url"],
}


# json_extract ------------------------------------------------------------------------------

_PATH_TOKEN = re.compile(
    r"""\.?(?P<name>[^.\[\]"']+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[(?P<star>\*)\]"""
    r"""|\[(?P<q>["'])(?P<quoted>(?:(?!(?P=q)).)*)(?P=q)\]"""
)
_WILDCARD = object()


def parse_path(path: str) -> list[Any]:
    """``items[0].name`` -> ``["items", 0, "name"]``; ``[*]`` is a wildcard over a list."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    tokens: list[Any] = []
    position = 0
    while position < len(text):
        match = _PATH_TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ToolError(
                f"The path {path!r} cannot be read at position {position + 1}: use names "
                'separated by dots, [0] for list items, [*] for every item, ["a.b"] for odd keys.',
                code="invalid_arguments",
                details={"errors": [{"path": "$.path", "message": "unreadable path"}]},
            )
        if match.group("name") is not None:
            tokens.append(match.group("name").strip())
        elif match.group("index") is not None:
            tokens.append(int(match.group("index")))
        elif match.group("star") is not None:
            tokens.append(_WILDCARD)
        else:
            tokens.append(match.group("quoted"))
        position = match.end()
    return tokens


def _step(value: Any, token: Any) -> tuple[bool, Any]:
    if isinstance(token, int) or (isinstance(token, str) and re.fullmatch(r"-?\d+", token)):
        if isinstance(value, list):
            index = int(token)
            if -len(value) <= index < len(value):
                return True, value[index]
            return False, None
        if isinstance(value, dict) and str(token) in value:
            return True, value[str(token)]
        return False, None
    if isinstance(value, dict) and token in value:
        return True, value[token]
    return False, None


def extract(document: Any, tokens: list[Any]) -> tuple[bool, Any]:
    """Follow ``tokens`` into ``document``; ``(found, value)``, a list of matches after ``[*]``."""
    for position, token in enumerate(tokens):
        if token is _WILDCARD:
            items = (
                document
                if isinstance(document, list)
                else list(document.values())
                if isinstance(document, dict)
                else None
            )
            if items is None:
                return False, None
            rest = tokens[position + 1 :]
            matches = [value for found, value in (extract(i, rest) for i in items) if found]
            return True, matches
        found, document = _step(document, token)
        if not found:
            return False, None
    return True, document


def json_extract(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The value at ``path`` in ``document`` (JSON text is parsed first)."""
    import json

    document = arguments["document"]
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            raise ToolError(
                "The document is a string but not JSON text; pass the JSON value itself.",
                code="invalid_arguments",
                details={"errors": [{"path": "$.document", "message": "not JSON text"}]},
            ) from None
        except RecursionError:
            raise ToolError(
                "The document is nested too deeply to read.",
                code="invalid_arguments",
                details={"errors": [{"path": "$.document", "message": "nested too deeply"}]},
            ) from None
    found, value = extract(document, parse_path(arguments["path"]))
    if not found:
        return {"found": False, "value": arguments.get("default")}
    return {"found": True, "value": value}


JSON_EXTRACT_INPUT = {
    "type": "object",
    "properties": {
        "document": {"description": "A JSON value, or JSON text to parse."},
        "path": {"type": "string", "maxLength": 500, "examples": ["items[0].name", "rows[*].id"]},
        "default": {"description": "Returned as value when nothing is at the path."},
    },
    "required": ["document", "path"],
    "additionalProperties": False,
}
JSON_EXTRACT_OUTPUT = {
    "type": "object",
    "properties": {"found": {"type": "boolean"}, "value": {}},
    "required": ["found", "value"],
}


# calculator --------------------------------------------------------------------------------

MAX_EXPRESSION_NODES = 200
MAX_RESULT_DIGITS = 1000
MAX_EXPONENT = 10_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_REFUSED = {
    ast.Name: "names such as {name!r}",
    ast.Call: "function calls",
    ast.Attribute: "attributes",
    ast.Subscript: "indexing",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.Lambda: "lambdas",
}


def _calc_error(message: str) -> ToolError:
    return ToolError(
        message,
        code="invalid_arguments",
        details={"errors": [{"path": "$.expression", "message": message}]},
    )


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_DIGITS * 3.33:
        raise _calc_error(f"The result has more than {MAX_RESULT_DIGITS} digits.")
    if isinstance(value, float) and not math.isfinite(value):
        raise _calc_error("The result is too large to represent.")
    if isinstance(value, complex):
        raise _calc_error("The result is not a real number.")
    return value


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _calc_error(f"Only numbers are allowed, not {node.value!r}.")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise _calc_error(f"Exponents are limited to {MAX_EXPONENT}.")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * math.log10(abs(left)) > MAX_RESULT_DIGITS
            ):
                raise _calc_error(f"The result would have more than {MAX_RESULT_DIGITS} digits.")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise _calc_error("Division by zero.") from None
        except OverflowError:
            raise _calc_error("The result is too large to represent.") from None
    for kind, what in _REFUSED.items():
        if isinstance(node, kind):
            name = getattr(node, "id", "")
            raise _calc_error(
                f"Only numbers, + - * / // % ** and parentheses are allowed; "
                f"{what.format(name=name)} are not."
            )
    raise _calc_error(
        f"Only numbers, + - * / // % ** and parentheses are allowed; found {type(node).__name__}."
    )


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic safely: numbers, + - * / // % **, parentheses; nothing else."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise _calc_error(f"The expression is not valid arithmetic: {exc.msg}.") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPRESSION_NODES:
        raise _calc_error(f"The expression is too long (more than {MAX_EXPRESSION_NODES} parts).")
    return _evaluate(tree)


def calculator(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """``{"result": number}`` for an arithmetic expression."""
    return {"result": calculate(arguments["expression"])}


CALCULATOR_INPUT = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1000,
            "examples": ["(2 + 3) * 4 ** 2 / 7"],
        }
    },
    "required": ["expression"],
    "additionalProperties": False,
}
CALCULATOR_OUTPUT = {
    "type": "object",
    "properties": {"result": {"type": "number"}},
    "required": ["result"],
}


# kb_search ---------------------------------------------------------------------------------

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


# tickets -----------------------------------------------------------------------------------

TICKET_AUDIT_FIELDS = ["number", "title", "status", "priority", "customer", "data"]
MAX_REMEMBERED_UPDATE_KEYS = 100


def _stored_key(key: str | None) -> str:
    if not key:
        return ""
    if len(key) <= 200:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def ticket_as_dict(ticket: Ticket) -> dict[str, Any]:
    """The JSON a ticket tool returns."""
    return {
        "id": ticket.pk,
        "number": ticket.number,
        "title": ticket.title,
        "description": ticket.description,
        "status": ticket.status,
        "priority": ticket.priority,
        "customer": ticket.customer,
        "data": ticket.data,
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
    }


@transaction.atomic
def ticket_create(
    *,
    tenant: Any,
    title: str,
    description: str = "",
    priority: str = TicketPriority.NORMAL,
    customer: str = "",
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    caller: str = "",
) -> tuple[Ticket, bool]:
    """Open a ticket with the tenant's next number; ``(ticket, created)``.

    Atomic with its ``ticket.create`` audit event. Idempotent per key: when a ticket with
    ``idempotency_key`` exists, it is returned unchanged with ``created=False`` and nothing
    is written. Safe under concurrency: a clash on the number or the key retries.
    """
    key = _stored_key(idempotency_key)
    tickets = Ticket.objects.for_tenant(tenant)
    for _attempt in range(10):
        if key:
            existing = tickets.filter(idempotency_key=key).first()
            if existing is not None:
                return existing, False
        number = (tickets.aggregate(n=Max("number"))["n"] or 0) + 1
        try:
            with transaction.atomic():
                ticket = Ticket.objects.for_tenant(tenant).create(
                    tenant=tenant,
                    number=number,
                    title=title,
                    description=description,
                    priority=priority,
                    customer=customer,
                    data=dict(data or {}),
                    idempotency_key=key,
                )
        except IntegrityError:
            continue  # another transaction took the number or the key: look again
        audit_record(
            action="ticket.create",
            target=ticket,
            tenant=tenant,
            after=snapshot(ticket, TICKET_AUDIT_FIELDS),
            metadata={"caller": caller, "idempotency_key": key},
        )
        return ticket, True
    raise ToolError(
        "Could not allocate a ticket number; try again.", code="upstream_error", retryable=True
    )


@transaction.atomic
def ticket_update(
    *,
    tenant: Any,
    number: int,
    status: str | None = None,
    priority: str | None = None,
    note: str | None = None,
    idempotency_key: str | None = None,
    caller: str = "",
) -> tuple[Ticket, list[str], bool]:
    """Change a ticket's status or priority and/or add a note; ``(ticket, changed, replayed)``.

    Atomic with its ``ticket.update`` audit event (written only when something changed).
    Idempotent per key: a key already applied to this ticket changes nothing and returns
    ``replayed=True``. Raises ``Ticket.DoesNotExist`` for an unknown number.
    """
    ticket = Ticket.objects.for_tenant(tenant).select_for_update().get(number=number)
    key = _stored_key(idempotency_key)
    data = dict(ticket.data or {})
    applied = list(data.get("update_keys") or [])
    if key and key in applied:
        return ticket, [], True
    before = snapshot(ticket, TICKET_AUDIT_FIELDS)
    changed: list[str] = []
    if status is not None and status != ticket.status:
        ticket.status = status
        changed.append("status")
    if priority is not None and priority != ticket.priority:
        ticket.priority = priority
        changed.append("priority")
    if note:
        notes = data.get("notes") if isinstance(data.get("notes"), list) else []
        data["notes"] = [
            *notes,
            {"text": note, "by": caller, "at": timezone.now().isoformat()},
        ]
        changed.append("notes")
    if not changed:
        return ticket, [], False
    if key:
        data["update_keys"] = [*applied, key][-MAX_REMEMBERED_UPDATE_KEYS:]
    ticket.data = data
    ticket.save(update_fields=["status", "priority", "data", "updated_at"])
    audit_record(
        action="ticket.update",
        target=ticket,
        tenant=tenant,
        before=before,
        after=snapshot(ticket, TICKET_AUDIT_FIELDS),
        metadata={"caller": caller, "idempotency_key": key, "changed": changed},
    )
    return ticket, changed, False


def ticket_create_tool(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ticket, created = ticket_create(
        tenant=ctx.tenant,
        title=arguments["title"],
        description=arguments.get("description", ""),
        priority=arguments.get("priority", TicketPriority.NORMAL),
        customer=arguments.get("customer", ""),
        data=arguments.get("data"),
        idempotency_key=ctx.idempotency_key,
        caller=ctx.caller,
    )
    return {"ticket": ticket_as_dict(ticket), "created": created}


def ticket_update_tool(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    try:
        ticket, changed, replayed = ticket_update(
            tenant=ctx.tenant,
            number=arguments["number"],
            status=arguments.get("status"),
            priority=arguments.get("priority"),
            note=arguments.get("note"),
            idempotency_key=ctx.idempotency_key,
            caller=ctx.caller,
        )
    except Ticket.DoesNotExist:
        raise ToolError(f"There is no ticket #{arguments['number']}.", code="not_found") from None
    return {"ticket": ticket_as_dict(ticket), "changed": changed, "replayed": replayed}


TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "number": {"type": "integer"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "status": {"enum": TicketStatus.values},
        "priority": {"enum": TicketPriority.values},
        "customer": {"type": "string"},
        "data": {"type": "object"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
    },
    "required": ["id", "number", "title", "status", "priority"],
}
TICKET_CREATE_INPUT = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 300},
        "description": {"type": "string", "maxLength": 20000},
        "priority": {"enum": TicketPriority.values, "default": TicketPriority.NORMAL},
        "customer": {"type": "string", "maxLength": 200},
        "data": {"type": "object"},
    },
    "required": ["title"],
    "additionalProperties": False,
}
TICKET_CREATE_OUTPUT = {
    "type": "object",
    "properties": {"ticket": TICKET_SCHEMA, "created": {"type": "boolean"}},
    "required": ["ticket", "created"],
}
TICKET_UPDATE_INPUT = {
    "type": "object",
    "properties": {
        "number": {"type": "integer", "minimum": 1},
        "status": {"enum": TicketStatus.values},
        "priority": {"enum": TicketPriority.values},
        "note": {"type": "string", "minLength": 1, "maxLength": 5000},
    },
    "required": ["number"],
    "anyOf": [{"required": ["status"]}, {"required": ["priority"]}, {"required": ["note"]}],
    "additionalProperties": False,
}
TICKET_UPDATE_OUTPUT = {
    "type": "object",
    "properties": {
        "ticket": TICKET_SCHEMA,
        "changed": {"type": "array", "items": {"type": "string"}},
        "replayed": {"type": "boolean"},
    },
    "required": ["ticket", "changed", "replayed"],
}


# registry ----------------------------------------------------------------------------------

BUILTINS: dict[str, BuiltinSpec] = {
    spec.name: spec
    for spec in [
        BuiltinSpec(
            name="http_request",
            description="Send a GET or POST request to one of the tool's allowed hosts and "
            "return the status and body (parsed when JSON).",
            input_schema=HTTP_REQUEST_INPUT,
            output_schema=HTTP_REQUEST_OUTPUT,
            risk=Risk.WRITE,
            fn=http_request,
            risk_why="it can send POST requests to its allowed hosts",
        ),
        BuiltinSpec(
            name="json_extract",
            description='Extract a value from a JSON document by a path like "items[0].name" '
            "(use [*] for every item of a list).",
            input_schema=JSON_EXTRACT_INPUT,
            output_schema=JSON_EXTRACT_OUTPUT,
            risk=Risk.READ,
            fn=json_extract,
        ),
        BuiltinSpec(
            name="calculator",
            description="Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses.",
            input_schema=CALCULATOR_INPUT,
            output_schema=CALCULATOR_OUTPUT,
            risk=Risk.READ,
            fn=calculator,
        ),
        BuiltinSpec(
            name="kb_search",
            description="Search the tenant's knowledge base and return the best-matching "
            "documents with scores and snippets.",
            input_schema=KB_SEARCH_INPUT,
            output_schema=KB_SEARCH_OUTPUT,
            risk=Risk.READ,
            fn=kb_search,
        ),
        BuiltinSpec(
            name="ticket_create",
            description="Open a support ticket (a retried call with the same idempotency key "
            "returns the first ticket).",
            input_schema=TICKET_CREATE_INPUT,
            output_schema=TICKET_CREATE_OUTPUT,
            risk=Risk.WRITE,
            fn=ticket_create_tool,
            risk_why="it opens tickets",
        ),
        BuiltinSpec(
            name="ticket_update",
            description="Change a ticket's status or priority, or add a note to it.",
            input_schema=TICKET_UPDATE_INPUT,
            output_schema=TICKET_UPDATE_OUTPUT,
            risk=Risk.DESTRUCTIVE,
            fn=ticket_update_tool,
            risk_why="it can resolve or close any ticket (that is how a refund is recorded)",
        ),
    ]
}
