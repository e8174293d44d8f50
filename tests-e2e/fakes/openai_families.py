"""The fake OpenAI's stateless endpoint families, beside chat: embeddings, images, audio, responses, ...

Each route accepts only what the real API accepts: a Bearer key, the openai SDK's own
request types for JSON bodies (no unknown fields at any depth), and for multipart uploads
exactly the SDK's form fields, with the required ones and the files present. Rerank, OCR
and video generations are not OpenAI's: they speak the Jina/Cohere-style rerank, Mistral's
OCR and a generations-style video API, as OpenAI-compatible providers offer them.

Uploads are parsed as they stream in (like the edge): each file is recorded by size and
SHA-256, so tests compare what arrived with what they sent, byte for byte, without the
fake holding a 25 MB file. Answers are deterministic functions of the request, so a test
can compute the exact bytes it must receive (`speech_bytes`, `image_bytes`).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import typing
from collections.abc import AsyncIterator, Callable, MutableSequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream
from multipart import MultipartSegment, ParserError, PushMultipartParser, parse_options_header
from openai.types import (
    completion_create_params,
    embedding_create_params,
    image_create_variation_params,
    image_edit_params,
    image_generate_params,
    moderation_create_params,
)
from openai.types.audio import speech_create_params, transcription_create_params, translation_create_params
from openai.types.responses import response_create_params

from fakes.scenario import FaultInjector
from fakes.wire import sse, strict_adapter, validate_typed_dict

EMBEDDING_DIMENSIONS = 8
SPEECH_BYTES = 300 * 1024  # several gRPC frames' worth


def speech_bytes(text: str, response_format: str = "mp3") -> bytes:
    """The audio the fake answers for `text`: deterministic, binary, every byte value present."""
    seed = hashlib.sha256(f"{response_format}:{text}".encode()).digest()
    block = bytes(range(256)) + seed
    return (block * (SPEECH_BYTES // len(block) + 1))[:SPEECH_BYTES]


def image_bytes(prompt: str) -> bytes:
    """The image the fake generates for `prompt` (a PNG signature, then bytes of the prompt's hash)."""
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(prompt.encode()).digest() * 64


def tokens(text: str) -> int:
    """The fake's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


@dataclass
class UploadedFile:
    name: str
    filename: str
    content_type: str
    size: int = 0
    sha256: str = ""


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    def one(self, name: str) -> str | None:
        values = self.fields.get(name) or self.fields.get(f"{name}[]")
        return values[-1] if values else None


class InvalidRequestError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None) -> Response[Any]:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Response(body, status_code=status)


def _fields_of(*typed_dicts: Any) -> frozenset[str]:
    names: set[str] = set()
    for typed in typed_dicts:
        names |= set(typing.get_type_hints(typed))
    return frozenset(names)


@dataclass(frozen=True)
class _FormSpec:
    fields: frozenset[str]  # every field the SDK may send, files included
    files: frozenset[str]
    required: frozenset[str]


_TRANSCRIPTION = _FormSpec(
    _fields_of(transcription_create_params.TranscriptionCreateParamsStreaming),
    frozenset({"file"}),
    frozenset({"file", "model"}),
)
_TRANSLATION = _FormSpec(
    _fields_of(translation_create_params.TranslationCreateParams), frozenset({"file"}), frozenset({"file", "model"})
)
_IMAGE_EDIT = _FormSpec(
    _fields_of(image_edit_params.ImageEditParamsStreaming), frozenset({"image", "mask"}), frozenset({"image", "prompt"})
)
_IMAGE_VARIATION = _FormSpec(
    _fields_of(image_create_variation_params.ImageCreateVariationParams), frozenset({"image"}), frozenset({"image"})
)
_JSON_TYPES = {
    "completions": (
        strict_adapter(completion_create_params.CompletionCreateParamsNonStreaming),
        strict_adapter(completion_create_params.CompletionCreateParamsStreaming),
    ),
    "embeddings": (strict_adapter(embedding_create_params.EmbeddingCreateParams),) * 2,
    "responses": (
        strict_adapter(response_create_params.ResponseCreateParamsNonStreaming),
        strict_adapter(response_create_params.ResponseCreateParamsStreaming),
    ),
    "images/generations": (
        strict_adapter(image_generate_params.ImageGenerateParamsNonStreaming),
        strict_adapter(image_generate_params.ImageGenerateParamsStreaming),
    ),
    "audio/speech": (strict_adapter(speech_create_params.SpeechCreateParams),) * 2,
    "moderations": (strict_adapter(moderation_create_params.ModerationCreateParams),) * 2,
}


class FamilyRoutes:
    """The routes, recording every accepted request into `requests` (shared with the chat fake)."""

    def __init__(self, api_key: str, requests: MutableSequence[dict[str, Any]], faults: FaultInjector) -> None:
        """`faults`: the chat fake's failure injection by model name (fakes/scenario.py), applied here too."""
        self._api_key = api_key
        self._requests = requests
        self._faults = faults

    def handlers(self) -> list[HTTPRouteHandler]:
        json_routes: dict[str, Callable[[dict[str, Any]], Response[Any]]] = {
            "completions": _completion,
            "embeddings": _embeddings,
            "responses": _response,
            "images/generations": _image_generation,
            "audio/speech": _speech,
            "moderations": _moderation,
            "rerank": _rerank,
            "ocr": _ocr,
            "videos/generations": _video,
        }
        form_routes: dict[str, tuple[_FormSpec, Callable[[Form], Response[Any]]]] = {
            "audio/transcriptions": (_TRANSCRIPTION, _transcription),
            "audio/translations": (_TRANSLATION, _translation),
            "images/edits": (_IMAGE_EDIT, _image_edit),
            "images/variations": (_IMAGE_VARIATION, _image_variation),
        }
        handlers = [self._json_handler(name, answer) for name, answer in json_routes.items()]
        handlers += [self._form_handler(name, spec, answer) for name, (spec, answer) in form_routes.items()]
        return handlers

    def _json_handler(self, name: str, answer: Callable[[dict[str, Any]], Response[Any]]) -> HTTPRouteHandler:
        async def handle(request: Request[Any, Any, Any]) -> Response[Any]:
            if request.headers.get("authorization") != f"Bearer {self._api_key}":
                return _error(401, "Incorrect API key provided.", code="invalid_api_key")
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return _error(415, "Content-Type must be application/json")
            try:
                body = orjson.loads(await request.body())
                _validate_json(name, body)
            except orjson.JSONDecodeError:
                return _error(400, "We could not parse the JSON body of your request.")
            except InvalidRequestError as bad:
                return _error(bad.status, bad.message)
            self._requests.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
            return self._fault(str(body.get("model") or "")) or answer(body)

        return post(f"/v1/{name}", status_code=200, name=f"fake:{name}")(handle)

    def _form_handler(self, name: str, spec: _FormSpec, answer: Callable[[Form], Response[Any]]) -> HTTPRouteHandler:
        async def handle(request: Request[Any, Any, Any]) -> Response[Any]:
            if request.headers.get("authorization") != f"Bearer {self._api_key}":
                return _error(401, "Incorrect API key provided.", code="invalid_api_key")
            try:
                form = await _read_form(request, spec)
            except InvalidRequestError as bad:
                return _error(bad.status, bad.message)
            self._requests.append(
                {"path": request.url.path, "headers": dict(request.headers), "fields": form.fields, "files": form.files}
            )
            return self._fault(form.one("model") or "") or answer(form)

        return post(f"/v1/{name}", status_code=200, name=f"fake:{name}", request_max_body_size=None)(handle)

    def _fault(self, model: str) -> Response[Any] | None:
        """The injected failure for `model`, if any (only `fake-flaky-<status>-<n>` applies here)."""
        status = self._faults.fault_for(model).error_status
        if status is None:
            return None
        return _error(status, f"The request failed with status {status}.", "server_error" if status >= 500 else "")


# --- Validation -------------------------------------------------------------------------------


def _validate_json(name: str, body: Any) -> None:
    if name in _JSON_TYPES:
        non_streaming, streaming = _JSON_TYPES[name]
        adapter = streaming if isinstance(body, dict) and body.get("stream") is True else non_streaming
        problem = validate_typed_dict(adapter, body)
        if problem is not None:
            raise InvalidRequestError(f"Invalid request: {problem}")
        return
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise InvalidRequestError("'model' is required.")
    required = {"rerank": ("query", "documents"), "ocr": ("document",), "videos/generations": ("prompt",)}[name]
    missing = [key for key in required if key not in body]
    if missing:
        raise InvalidRequestError(f"Missing required field(s): {', '.join(missing)}.", 422)


async def _read_form(request: Request[Any, Any, Any], spec: _FormSpec) -> Form:
    """The form, parsed as it streams in; files are hashed, not kept."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type != "multipart/form-data" or not options.get("boundary"):
        raise InvalidRequestError("Content-Type must be multipart/form-data with a boundary.", 415)
    parser = PushMultipartParser(options["boundary"])
    form = Form()
    current: UploadedFile | None = None
    digest = hashlib.sha256()
    text = bytearray()
    name = ""
    try:
        async for chunk in request.stream():
            for event in parser.parse(chunk) if chunk else ():
                if isinstance(event, MultipartSegment):
                    name = event.name
                    if event.filename is not None:
                        current, digest = UploadedFile(name, event.filename, event.content_type or ""), hashlib.sha256()
                    else:
                        current, text = None, bytearray()
                elif isinstance(event, bytes):
                    if current is not None:
                        current.size += len(event)
                        digest.update(event)
                    else:
                        text += event
                elif current is not None:
                    current.sha256 = digest.hexdigest()
                    form.files.append(current)
                else:
                    form.fields.setdefault(name, []).append(text.decode())
        parser.close()
    except ParserError as err:
        raise InvalidRequestError(f"Malformed multipart body: {err}") from None
    seen = {f.name.removesuffix("[]") for f in form.files} | {n.removesuffix("[]") for n in form.fields}
    unknown = sorted(seen - spec.fields)
    if unknown:
        raise InvalidRequestError(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    missing = sorted(spec.required - seen)
    if missing:
        raise InvalidRequestError(f"Missing required parameter: {', '.join(missing)}")
    misplaced = sorted({f.name.removesuffix("[]") for f in form.files} - spec.files)
    if misplaced or any(n.removesuffix("[]") in spec.files for n in form.fields):
        raise InvalidRequestError(f"Expected a file, not text, for: {', '.join(misplaced) or 'a file field'}")
    return form


# --- Answers ----------------------------------------------------------------------------------


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(body: dict[str, Any]) -> Response[Any]:
    prompt = body["prompt"] if isinstance(body["prompt"], str) else " ".join(map(str, body["prompt"]))
    text = f"Completed: {prompt}"
    envelope = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": body["model"]}
    usage = _usage(tokens(prompt), tokens(text))
    if not body.get("stream"):
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
        return Response({**envelope, "choices": [choice], "usage": usage})

    async def events() -> AsyncIterator[bytes]:
        def chunk(piece: str, finish: str | None) -> bytes:
            choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
            return sse({**envelope, "choices": [choice]})

        for word in text.split(" "):
            yield chunk(word + " ", None)
        yield chunk("", "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield sse({**envelope, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    return Stream(events(), media_type="text/event-stream")


def embedding_of(text: str) -> list[float]:
    """The fake's embedding of `text`: float32-exact values from its hash."""
    digest = hashlib.sha256(text.encode()).digest()
    return [struct.unpack("<f", struct.pack("<f", b / 255))[0] for b in digest[:EMBEDDING_DIMENSIONS]]


def _embeddings(body: dict[str, Any]) -> Response[Any]:
    inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
    data = []
    for index, text in enumerate(inputs):
        vector = embedding_of(str(text))
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    prompt = sum(tokens(str(t)) for t in inputs)
    usage = {"prompt_tokens": prompt, "total_tokens": prompt}
    return Response({"object": "list", "data": data, "model": body["model"], "usage": usage})


def _response_object(body: dict[str, Any], text: str, status: str) -> dict[str, Any]:
    prompt = body["input"] if isinstance(body["input"], str) else orjson.dumps(body["input"]).decode()
    message = {
        "type": "message",
        "id": "msg_fake",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "model": body["model"],
        "status": status,
        "output": [message] if status == "completed" else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": tokens(prompt),
            "input_tokens_details": {"cached_tokens": 2},
            "output_tokens": tokens(text),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens(prompt) + tokens(text),
        }
        if status == "completed"
        else None,
    }


def _response(body: dict[str, Any]) -> Response[Any]:
    prompt = body["input"] if isinstance(body["input"], str) else "structured input"
    text = f"Responded to: {prompt}"
    if not body.get("stream"):
        return Response(_response_object(body, text, "completed"))

    async def events() -> AsyncIterator[bytes]:
        created = _response_object(body, "", "in_progress")
        yield sse({"type": "response.created", "sequence_number": 0, "response": created}, "response.created")
        for number, word in enumerate(text.split(" "), start=1):
            delta = {
                "type": "response.output_text.delta",
                "sequence_number": number,
                "item_id": "msg_fake",
                "output_index": 0,
                "content_index": 0,
                "delta": word if number == 1 else " " + word,
                "logprobs": [],
            }
            yield sse(delta, "response.output_text.delta")
        done = _response_object(body, text, "completed")
        yield sse({"type": "response.completed", "sequence_number": 99, "response": done}, "response.completed")

    return Stream(events(), media_type="text/event-stream")


def _image_data(prompt: str, body_format: str | None) -> dict[str, Any]:
    if body_format == "url":
        return {"url": f"https://images.example/{hashlib.sha256(prompt.encode()).hexdigest()}.png"}
    return {"b64_json": base64.b64encode(image_bytes(prompt)).decode()}


def _image_answer(prompt: str, response_format: str | None, n: int) -> Response[Any]:
    usage = {
        "input_tokens": tokens(prompt),
        "output_tokens": 100 * n,
        "total_tokens": tokens(prompt) + 100 * n,
        "input_tokens_details": {"text_tokens": tokens(prompt), "image_tokens": 0},
    }
    return Response({"created": int(time.time()), "data": [_image_data(prompt, response_format)] * n, "usage": usage})


def _image_generation(body: dict[str, Any]) -> Response[Any]:
    return _image_answer(body["prompt"], body.get("response_format"), int(body.get("n") or 1))


def _image_edit(form: Form) -> Response[Any]:
    # The answer names the files it got, so an SDK caller can see them too.
    prompt = form.one("prompt") or ""
    described = prompt + "|" + ",".join(f.sha256 for f in form.files)
    return _image_answer(described, form.one("response_format"), int(form.one("n") or 1))


def _image_variation(form: Form) -> Response[Any]:
    return _image_answer(",".join(f.sha256 for f in form.files), form.one("response_format"), int(form.one("n") or 1))


def _transcript(form: Form, verb: str) -> str:
    audio = form.files[0]
    return f"{verb} {audio.filename} ({audio.size} bytes, sha256 {audio.sha256})"


def _transcription(form: Form) -> Response[Any]:
    text = _transcript(form, "Transcribed")
    response_format = form.one("response_format") or "json"
    if (form.one("stream") or "").lower() == "true":

        async def events() -> AsyncIterator[bytes]:
            for word in text.split(" "):
                yield sse({"type": "transcript.text.delta", "delta": word + " ", "logprobs": None})
            yield sse({"type": "transcript.text.done", "text": text, "logprobs": None, "usage": _audio_usage(text)})

        return Stream(events(), media_type="text/event-stream")
    if response_format == "text":
        return Response(text, media_type="text/plain")
    return Response({"text": text, "usage": _audio_usage(text)})


def _audio_usage(text: str) -> dict[str, Any]:
    """gpt-4o-transcribe's token usage: 50 audio tokens in, the transcript's out."""
    return {"type": "tokens", "input_tokens": 50, "output_tokens": tokens(text), "total_tokens": 50 + tokens(text)}


def _translation(form: Form) -> Response[Any]:
    text = _transcript(form, "Translated")
    if (form.one("response_format") or "json") == "text":
        return Response(text, media_type="text/plain")
    return Response({"text": text})


def _speech(body: dict[str, Any]) -> Response[Any]:
    response_format = body.get("response_format") or "mp3"
    media = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac"}
    audio = speech_bytes(body["input"], response_format)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(audio), 10_000):  # sent in pieces, as a real TTS stream is
            yield audio[start : start + 10_000]

    return Stream(chunks(), media_type=media.get(response_format, "application/octet-stream"))


def _moderation(body: dict[str, Any]) -> Response[Any]:
    inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
    results = []
    for text in inputs:
        flagged = "attack" in str(text).lower()
        results.append(
            {
                "flagged": flagged,
                "categories": {"violence": flagged, "harassment": False},
                "category_scores": {"violence": 0.9 if flagged else 0.01, "harassment": 0.0},
            }
        )
    return Response({"id": "modr-fake", "model": body.get("model") or "omni-moderation-latest", "results": results})


def _rerank(body: dict[str, Any]) -> Response[Any]:
    """Jina/Cohere-style: results sorted by relevance, each with the document's index."""
    query = set(str(body["query"]).lower().split())
    scored = []
    for index, document in enumerate(body["documents"]):
        text = document if isinstance(document, str) else str(document.get("text", ""))
        words = set(text.lower().split())
        scored.append({"index": index, "relevance_score": len(query & words) / max(len(query), 1)})
    scored.sort(key=lambda r: (-r["relevance_score"], r["index"]))
    top_n = body.get("top_n")
    results = scored[:top_n] if isinstance(top_n, int) else scored
    total = tokens(str(body["query"])) + sum(tokens(str(d)) for d in body["documents"])
    return Response({"id": "rerank-fake", "model": body["model"], "results": results, "usage": {"total_tokens": total}})


def _ocr(body: dict[str, Any]) -> Response[Any]:
    """Mistral-style OCR: one page of markdown per document."""
    document = body["document"]
    source = document.get("document_url") or document.get("image_url") if isinstance(document, dict) else None
    page = {"index": 0, "markdown": f"# OCR of {source}", "images": [], "dimensions": None}
    return Response(
        {"pages": [page], "model": body["model"], "usage_info": {"pages_processed": 1, "doc_size_bytes": 1234}}
    )


def _video(body: dict[str, Any]) -> Response[Any]:
    return Response(
        {
            "id": "video_fake",
            "object": "video.generation",
            "created_at": int(time.time()),
            "status": "queued",
            "model": body["model"],
            "prompt": body["prompt"],
        }
    )
