"""The HTTP face of `seal serve`: OpenAI's chat completions and models endpoints (JSON, and SSE
streams as OpenAI sends them), the memory endpoints, and the web page at `/`.

Every route below `/v1` needs an API key (`Authorization: Bearer KEY`) naming the user whose
namespace it works in; nothing else in a request can name a user. Errors are OpenAI-shaped
(`{"error": {"message", "type", "code"}}`) and speak only of the asker's own memory; an
unexpected failure is logged and answered with its kind only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import PurePath
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from agent.core.config import SealConfig
from agent.core.errors import DocumentError, SealError
from agent.documents import document_from_bytes, is_url, read_url
from agent.serve.engine import Answer, Ask, Engine
from agent.serve.spaces import Busy, Conflict, NotFound, parse_id
from agent.web import AddressRefused, policy_of

log = logging.getLogger("seal.serve")
MODELS = ("seal", "base")  # the user's current knowledge, and the base model alone
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers around an upload


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


def error_body(message: str, code: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _status_of(exc: SealError) -> tuple[int, str]:
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, Conflict):
        return 409, "conflict"
    if isinstance(exc, Busy):
        return 429, "too_many_queued"
    if isinstance(exc, AddressRefused):
        return 400, "address_refused"
    if isinstance(exc, DocumentError):
        return 400, "unreadable_document"
    return 400, "invalid_request"


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413), whether or not they declare a length;
    add the security headers to every response."""

    class TooLarge(Exception):
        pass

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self.TooLarge
            return message

        started = False

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = message | {"headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, limited, tracked_send)
        except self.TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps(
            error_body(
                f"request body over {self.limit:,} bytes (serve.max_upload_bytes)", "too_large"
            )
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def question_of(body: dict[str, Any]) -> str:
    """The text of the last user message of an OpenAI `messages` list (the product answers one
    question at a time, closed-book, with SEAL's prompt)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "invalid_messages")
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):  # content parts: the text ones
            content = " ".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        if isinstance(content, str) and content.strip():
            return content.strip()
        break
    raise ApiError(400, "the last user message has no text", "invalid_messages")


def _int_option(body: dict, *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ApiError(400, f"{name} must be a positive integer", "invalid_option")
        return value
    return None


def completion(answer: Answer, model: str, created: int, cid: str) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        },
        "seal": seal_fields(answer),
    }


def seal_fields(answer: Answer) -> dict:
    return {"adapter_version": answer.version, "mode": answer.mode, "gate": answer.gate}


def chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, **extra):
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    } | extra
    return f"data: {json.dumps(body)}\n\n"


def create_app(engine: Engine, cfg: SealConfig) -> FastAPI:
    app = FastAPI(title="seal serve", docs_url=None, redoc_url=None, openapi_url=None)
    serve = cfg.serve
    if serve.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=serve.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=serve.max_upload_bytes + FORM_OVERHEAD)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.message, exc.code, exc.kind), status_code=exc.status)

    @app.exception_handler(SealError)
    async def seal_error(request: Request, exc: SealError):
        status, code = _status_of(exc)
        return JSONResponse(error_body(str(exc), code), status_code=status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("request %s %s failed", request.method, request.url.path)
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return JSONResponse(error_body(message, "internal", "server_error"), status_code=500)

    def user(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not serve.require_api_keys:
            return serve.anonymous_user
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(
                401,
                "an API key is required (Authorization: Bearer KEY; seal serve --add-user "
                "NAME makes one)",
                "missing_api_key",
                "authentication_error",
            )
        name = engine.user_of(key.strip())
        if name is None:
            raise ApiError(401, "unknown API key", "invalid_api_key", "authentication_error")
        return name

    async def in_model_thread(fn, *args, **kwargs):
        return await asyncio.wrap_future(engine.run(fn, *args, **kwargs))

    async def json_body(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "the request body is not JSON", "invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", "invalid_json")
        return body

    # ---------------------------------------------------------------- the page
    @app.get("/", response_class=HTMLResponse)
    async def page():
        return resources.files("agent.serve").joinpath("page.html").read_text(encoding="utf-8")

    # ---------------------------------------------------------------- OpenAI endpoints
    @app.get("/v1/models")
    async def models(name: str = Depends(user)):
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": name} for m in MODELS
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, name: str = Depends(user)):
        body = await json_body(request)
        model = body.get("model", "seal")
        if model not in MODELS:
            raise ApiError(
                404, f"model {model!r} does not exist; GET /v1/models lists them", "model_not_found"
            )
        text = question_of(body)
        max_tokens = _int_option(body, "max_completion_tokens", "max_tokens")
        rag = body.get("rag")
        if rag is not None and not isinstance(rag, bool):
            raise ApiError(400, "rag must be true or false", "invalid_option")
        await run_in_threadpool(engine.ensure_user, name)
        ask = Ask(name, text, base=model == "base", rag=rag, max_tokens=max_tokens)
        created, cid = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not body.get("stream"):
            answer = await asyncio.wrap_future(engine.submit_ask(ask))
            return completion(answer, model, created, cid)
        return StreamingResponse(
            stream_answer(ask, model, created, cid),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def stream_answer(ask: Ask, model, created, cid) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        ended = False  # the answer's first line is complete; the rest is not sent

        def emit(piece: str) -> None:
            nonlocal ended
            if ended:
                return
            piece, newline, _ = piece.partition("\n")
            ended = bool(newline)
            if piece:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

        ask.emit = emit
        future = engine.submit_ask(ask)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))
        yield chunk(cid, created, model, {"role": "assistant", "content": ""})
        streamed = ""
        while (piece := await pieces.get()) is not None:
            streamed += piece
            yield chunk(cid, created, model, {"content": piece})
        try:
            answer = future.result()
        except SealError as exc:
            yield f"data: {json.dumps(error_body(str(exc), _status_of(exc)[1]))}\n\n"
            yield "data: [DONE]\n\n"
            return
        except Exception as exc:  # noqa: BLE001 - logged; the client gets the kind only
            log.exception("streamed answer failed")
            message = f"internal error ({type(exc).__name__})"
            yield f"data: {json.dumps(error_body(message, 'internal', 'server_error'))}\n\n"
            yield "data: [DONE]\n\n"
            return
        if not streamed.strip():  # nothing streamed (a stated fact's report): send it whole
            yield chunk(cid, created, model, {"content": answer.content})
        usage = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        }
        yield chunk(cid, created, model, {}, "stop", usage=usage, seal=seal_fields(answer))
        yield "data: [DONE]\n\n"

    # ---------------------------------------------------------------- memory
    async def read_upload(request: Request) -> tuple[Any, str]:
        """The document a POST /v1/documents carries: an uploaded file, text, or a URL."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "send the document as the form field 'file'", "missing_file")
            filename = PurePath(upload.filename or "upload.txt").name[:200] or "upload.txt"
            if PurePath(filename).suffix.lower() not in serve.upload_types:
                raise ApiError(
                    415,
                    f"{filename}: file type not accepted; send one of "
                    f"{', '.join(serve.upload_types)}",
                    "unsupported_type",
                )
            raw = await upload.read(serve.max_upload_bytes + 1)
            if len(raw) > serve.max_upload_bytes:
                raise ApiError(
                    413, f"{filename} is over {serve.max_upload_bytes:,} bytes", "too_large"
                )
            doc = await run_in_threadpool(document_from_bytes, raw, f"upload:{filename}")
            return doc, "file"
        body = await json_body(request)
        if isinstance(body.get("url"), str):
            url = body["url"].strip()
            if not is_url(url):
                raise ApiError(400, f"{url[:200]!r} is not an http(s) URL", "invalid_url")
            doc = await run_in_threadpool(
                read_url, url, serve.max_upload_bytes, cfg.ingest.timeout_s, policy_of(cfg.network)
            )
            return doc, "url"
        if isinstance(body.get("text"), str):
            title = body.get("title") if isinstance(body.get("title"), str) else "text"
            raw = body["text"].encode("utf-8")
            if len(raw) > serve.max_upload_bytes:
                raise ApiError(413, f"text over {serve.max_upload_bytes:,} bytes", "too_large")
            doc = await run_in_threadpool(document_from_bytes, raw, f"text:{title[:100]}")
            return doc, "text"
        raise ApiError(
            400,
            "send a file (multipart field 'file'), or JSON with 'text' (and 'title') or 'url'",
            "missing_document",
        )

    @app.post("/v1/documents", status_code=202)
    async def add_document(request: Request, name: str = Depends(user)):
        doc, source = await read_upload(request)
        await run_in_threadpool(engine.ensure_user, name)
        results = await in_model_thread(engine.feed, name, [doc], source)
        public = results[0]["id"]
        view = await run_in_threadpool(engine.document, name, parse_id(name, public))
        return view | {"duplicate": results[0]["duplicate"], "poll": f"/v1/documents/{public}"}

    @app.get("/v1/documents")
    async def list_documents(name: str = Depends(user)):
        return {"object": "list", "data": await run_in_threadpool(engine.documents, name)}

    @app.get("/v1/documents/{doc_id}")
    async def get_document(doc_id: str, name: str = Depends(user)):
        return await run_in_threadpool(engine.document, name, parse_id(name, doc_id))

    @app.delete("/v1/documents/{doc_id}")
    async def delete_document(doc_id: str, name: str = Depends(user)):
        number = parse_id(name, doc_id)
        await run_in_threadpool(engine.ensure_user, name)
        counts = await in_model_thread(engine.forget, name, number)
        return {"id": doc_id, "object": "document", "deleted": True} | counts

    @app.get("/v1/updates")
    async def updates(limit: int = 50, name: str = Depends(user)):
        limit = max(1, min(limit, 1000))
        return {"object": "list", "data": await run_in_threadpool(engine.history, name, limit)}

    @app.post("/v1/rollback")
    async def rollback(request: Request, name: str = Depends(user)):
        body = await json_body(request) if await request.body() else {}
        version = body.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 0
        ):
            raise ApiError(
                400, "version must be a non-negative integer (0: the base model)", "invalid_version"
            )
        await run_in_threadpool(engine.ensure_user, name)
        return await in_model_thread(engine.rollback, name, version)

    @app.get("/v1/status")
    async def status(name: str = Depends(user)):
        return await run_in_threadpool(engine.status, name)

    return app
