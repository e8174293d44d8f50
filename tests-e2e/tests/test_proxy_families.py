"""The stateless proxy families through the running stack, with the official openai SDK.

Every family is called as an application would (the SDK's own method; rerank, OCR and
video generations have none, so the SDK's generic `post`), under /v1 and the
Orq.ai-compatible /v2/proxy and /v3/router. The fake upstream checks the request against
the SDK's request types, multipart fields and file bytes (by SHA-256); its answers are
deterministic, so binary answers are compared byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from typing import Any

import httpx
import openai
import pytest

from fakes.openai_families import embedding_of, image_bytes, speech_bytes
from harness import OPENAI_KEY, request_log_entry, reset_peak_rss, rss

BASES = ["/v1", "/v2/proxy", "/v3/router"]


def _client(stack: Any, base: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.info.edge_url + base, api_key=stack.info.api_key, max_retries=0)


async def _logged(stack: Any, request_id: str) -> dict[str, Any]:
    return await request_log_entry(stack.info.edge_url, stack.info.api_key, request_id)


def _last(stack: Any, path: str) -> dict[str, Any]:
    """The last request the fake upstream accepted on `path`."""
    return next(r for r in reversed(stack.upstream.requests) if r["path"] == path)


@pytest.mark.parametrize("base", BASES)
async def test_embeddings_are_proxied_and_logged_with_usage(stack: Any, base: str) -> None:
    raw = await asyncio.to_thread(
        _client(stack, base).embeddings.with_raw_response.create,
        model="text-embedding-3-small",
        input=["memory snippet to embed", "another one"],
    )
    embeddings = raw.parse()
    # The SDK asks for base64 and decodes it: the floats arrived exactly.
    assert [e.embedding for e in embeddings.data] == [
        embedding_of("memory snippet to embed"),
        embedding_of("another one"),
    ]
    sent = _last(stack, "/v1/embeddings")
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent["body"]["model"] == "text-embedding-3-small"
    row = await _logged(stack, raw.headers["x-request-id"])
    assert (row["ingress"], row["status"], row["provider"], row["model_used"]) == (
        "proxy/embeddings",
        200,
        "openai",
        "text-embedding-3-small",
    )
    assert row["input_tokens"] == 6
    assert raw.headers["x-orqen-model"] == "text-embedding-3-small"


@pytest.mark.parametrize("base", BASES)
async def test_completions_stream_and_not(stack: Any, base: str) -> None:
    client = _client(stack, base)
    completion = await asyncio.to_thread(
        client.completions.create, model="gpt-3.5-turbo-instruct", prompt="say this", max_tokens=5
    )
    assert completion.choices[0].text == "Completed: say this"
    assert completion.usage is not None and completion.usage.prompt_tokens == 2

    def streamed() -> tuple[str, Any]:
        text, usage = "", None
        for chunk in client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="stream this", stream=True, stream_options={"include_usage": True}
        ):
            text += "".join(c.text for c in chunk.choices)
            usage = chunk.usage or usage
        return text, usage

    text, usage = await asyncio.to_thread(streamed)
    assert text.strip() == "Completed: stream this"
    assert usage.completion_tokens == 3


@pytest.mark.parametrize("base", BASES)
async def test_responses_stream_and_not_with_usage_logged(stack: Any, base: str) -> None:
    client = _client(stack, base)
    raw = await asyncio.to_thread(
        client.responses.with_raw_response.create, model="gpt-4.1-mini", input="tell me something"
    )
    assert raw.parse().output_text == "Responded to: tell me something"
    row = await _logged(stack, raw.headers["x-request-id"])
    assert (row["ingress"], row["input_tokens"], row["cached_input_tokens"], row["stream"]) == (
        "proxy/responses",
        3,
        2,
        False,
    )

    def streamed() -> tuple[str, list[str], str]:
        with client.responses.with_streaming_response.create(
            model="gpt-4.1-mini", input="stream it please", stream=True
        ) as response:
            request_id = response.headers["x-request-id"]
            events = list(response.parse())
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        return text, [e.type for e in events], request_id

    text, kinds, request_id = await asyncio.to_thread(streamed)
    assert text == "Responded to: stream it please"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    row = await _logged(stack, request_id)
    assert (row["stream"], row["input_tokens"], row["output_tokens"], row["status"]) == (True, 3, 5, 200)


@pytest.mark.parametrize("base", BASES)
async def test_image_generation_returns_the_image_bytes(stack: Any, base: str) -> None:
    images = await asyncio.to_thread(
        _client(stack, base).images.generate, model="gpt-image-1", prompt="A clean product UI mockup"
    )
    assert images.data is not None
    assert base64.b64decode(images.data[0].b64_json or "") == image_bytes("A clean product UI mockup")


@pytest.mark.parametrize("base", BASES)
async def test_image_edits_and_variations_upload_every_file_byte(stack: Any, base: str) -> None:
    client = _client(stack, base)
    picture = bytes(range(256)) * 400 + b"\r\n--not-a-boundary\r\n"  # binary, with multipart look-alikes
    mask = b"\x89PNG mask" * 1000
    edited = await asyncio.to_thread(
        client.images.edit,
        model="gpt-image-1",
        image=("picture.png", picture, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt='Add a "hat"\nplease',
        n=1,
    )
    sent = _last(stack, "/v1/images/edits")
    assert sent["fields"]["prompt"] == ['Add a "hat"\nplease']
    assert sent["fields"]["model"] == ["gpt-image-1"]
    files = {f.name: f for f in sent["files"]}
    assert (files["image"].filename, files["image"].content_type) == ("picture.png", "image/png")
    assert (files["image"].size, files["image"].sha256) == (len(picture), hashlib.sha256(picture).hexdigest())
    assert files["mask"].sha256 == hashlib.sha256(mask).hexdigest()
    described = 'Add a "hat"\nplease|' + hashlib.sha256(picture).hexdigest() + "," + hashlib.sha256(mask).hexdigest()
    assert edited.data is not None and base64.b64decode(edited.data[0].b64_json or "") == image_bytes(described)

    varied = await asyncio.to_thread(
        client.images.create_variation, image=("picture.png", picture, "image/png"), model="dall-e-2"
    )
    assert varied.data is not None
    assert base64.b64decode(varied.data[0].b64_json or "") == image_bytes(hashlib.sha256(picture).hexdigest())


@pytest.mark.parametrize("base", BASES)
async def test_transcriptions_and_translations_upload_the_audio_exactly(stack: Any, base: str) -> None:
    client = _client(stack, base)
    audio = hashlib.sha256(b"seed").digest() * 20_000  # 640 KB: many frames on every hop
    digest = hashlib.sha256(audio).hexdigest()
    raw = await asyncio.to_thread(
        client.audio.transcriptions.with_raw_response.create,
        model="gpt-4o-transcribe",
        file=("speech.mp3", audio, "audio/mpeg"),
        language="en",
    )
    transcript = raw.parse()
    assert transcript.text == f"Transcribed speech.mp3 ({len(audio)} bytes, sha256 {digest})"
    sent = _last(stack, "/v1/audio/transcriptions")
    assert sent["fields"] == {"model": ["gpt-4o-transcribe"], "language": ["en"]}
    row = await _logged(stack, raw.headers["x-request-id"])
    assert (row["ingress"], row["input_tokens"], row["model_requested"]) == (
        "proxy/audio/transcriptions",
        50,
        "gpt-4o-transcribe",
    )

    translation = await asyncio.to_thread(
        client.audio.translations.create, model="whisper-1", file=("speech.mp3", audio, "audio/mpeg")
    )
    assert translation.text == f"Translated speech.mp3 ({len(audio)} bytes, sha256 {digest})"


async def test_a_streamed_transcription_streams_back(stack: Any) -> None:
    def streamed() -> list[Any]:
        return list(
            _client(stack).audio.transcriptions.create(
                model="gpt-4o-transcribe", file=("a.wav", b"RIFF" + b"\0" * 5000, "audio/wav"), stream=True
            )
        )

    events = await asyncio.to_thread(streamed)
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text.startswith("Transcribed a.wav (5004 bytes")


async def test_an_upload_with_the_file_before_the_model_field_is_spooled_then_sent(stack: Any) -> None:
    """curl -F file=@a.mp3 -F model=whisper-1: the model arrives last, the file still gets through whole."""
    audio = bytes(reversed(range(256))) * 8000  # 2 MB: past the edge's in-memory spool
    boundary = "curl-style-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="late.mp3"\r\n'
        "Content-Type: audio/mpeg\r\n\r\n"
    ).encode()
    body += audio + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'.encode()
    body += f"--{boundary}--\r\n".encode()
    async with httpx.AsyncClient(base_url=stack.info.edge_url, timeout=60) as http:
        response = await http.post(
            "/v1/audio/transcriptions",
            content=body,
            headers={
                "authorization": f"Bearer {stack.info.api_key}",
                "content-type": f"multipart/form-data; boundary={boundary}",
            },
        )
    assert response.status_code == 200, response.text
    sent = _last(stack, "/v1/audio/transcriptions")
    assert sent["fields"] == {"model": ["whisper-1"]}
    assert (sent["files"][0].size, sent["files"][0].sha256) == (len(audio), hashlib.sha256(audio).hexdigest())


@pytest.mark.parametrize(("base", "path"), [("/v1", "audio/speech"), ("/v2/proxy", "speech"), ("/v3/router", "speech")])
async def test_speech_returns_the_binary_audio_byte_for_byte(stack: Any, base: str, path: str) -> None:
    if path == "audio/speech":
        response = await asyncio.to_thread(
            _client(stack, base).audio.speech.create, model="tts-1", voice="alloy", input="Hello from Orqen"
        )
        content, content_type = response.content, response.response.headers["content-type"]
    else:  # Orq.ai's own path for it, which the SDK has no method for
        answer = await asyncio.to_thread(
            _client(stack, base).post,
            f"/{path}",
            body={"model": "tts-1", "voice": "alloy", "input": "Hello from Orqen"},
            cast_to=httpx.Response,
        )
        content, content_type = answer.content, answer.headers["content-type"]
    assert content_type == "audio/mpeg"
    assert content == speech_bytes("Hello from Orqen")


@pytest.mark.parametrize("base", BASES)
async def test_moderations_without_a_model_go_to_the_default_provider(stack: Any, base: str) -> None:
    raw = await asyncio.to_thread(_client(stack, base).moderations.with_raw_response.create, input="I will attack")
    assert raw.parse().results[0].flagged is True
    assert "model" not in _last(stack, "/v1/moderations")["body"]
    row = await _logged(stack, raw.headers["x-request-id"])
    assert (row["model_requested"], row["model_used"], row["provider"]) == ("", "omni-moderation-latest", "openai")


@pytest.mark.parametrize("base", BASES)
async def test_rerank_goes_to_the_compatible_provider_the_model_names(stack: Any, base: str) -> None:
    answer = await asyncio.to_thread(
        _client(stack, base).post,
        "/rerank",
        body={"model": "local/jina-reranker-v2", "query": "red fox", "documents": ["a blue sky", "the red fox"]},
        cast_to=httpx.Response,
    )
    assert answer.json()["results"][0] == {"index": 1, "relevance_score": 1.0}
    sent = _last(stack, "/v1/rerank")
    assert sent["body"]["model"] == "jina-reranker-v2"  # the provider's own name for it
    row = await _logged(stack, answer.headers["x-request-id"])
    assert (row["ingress"], row["provider"], row["input_tokens"]) == ("proxy/rerank", "local", 8)


async def test_an_accounts_saved_provider_gets_its_key_and_base_url_and_the_header_key_wins(stack: Any) -> None:
    """Saved credential injection as for chat: the account's own OpenAI-compatible endpoint and key."""
    headers = {"authorization": f"Bearer {stack.info.api_key}"}
    saved = {"provider": "jinaai", "api_key": OPENAI_KEY, "base_url": stack.upstreams.urls["openai"] + "/v1"}
    async with httpx.AsyncClient(base_url=stack.info.edge_url, headers=headers) as http:
        assert (await http.post("/v1/account/providers", json=saved)).status_code in (200, 201)
    body = {"model": "jinaai/jina-reranker-v2", "query": "blue sky", "documents": ["a blue sky", "a red fox"]}
    client = _client(stack, "/v3/router")
    answer = await asyncio.to_thread(client.post, "/rerank", body=body, cast_to=httpx.Response)
    assert answer.json()["results"][0]["index"] == 0
    sent = _last(stack, "/v1/rerank")
    assert (sent["headers"]["authorization"], sent["body"]["model"]) == (f"Bearer {OPENAI_KEY}", "jina-reranker-v2")
    with pytest.raises(openai.AuthenticationError):
        await asyncio.to_thread(
            client.post,
            "/rerank",
            body=body,
            cast_to=httpx.Response,
            options={"headers": {"X-Orqen-Provider-Key": "sk-callers-own-jina-key"}},
        )


async def test_ocr_and_video_generations_through_v1(stack: Any) -> None:
    client = _client(stack)
    document = {"type": "document_url", "document_url": "https://example.com/a.pdf"}
    ocr = await asyncio.to_thread(
        client.post, "/ocr", body={"model": "local/mistral-ocr-latest", "document": document}, cast_to=httpx.Response
    )
    assert ocr.json()["pages"][0]["markdown"] == "# OCR of https://example.com/a.pdf"
    video = await asyncio.to_thread(
        client.post, "/videos/generations", body={"model": "local/veo-3", "prompt": "a cat"}, cast_to=httpx.Response
    )
    assert (video.json()["status"], video.json()["model"]) == ("queued", "veo-3")


async def test_a_family_the_provider_does_not_offer_is_a_clear_400(stack: Any) -> None:
    client = _client(stack)
    with pytest.raises(openai.BadRequestError) as refused:
        await asyncio.to_thread(
            client.post, "/rerank", body={"model": "gpt-4o", "query": "q", "documents": ["d"]}, cast_to=httpx.Response
        )
    assert "openai provider does not offer /v1/rerank" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        await asyncio.to_thread(client.embeddings.create, model="claude-sonnet-4-6", input="x")
    assert "anthropic provider does not offer /v1/embeddings" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        await asyncio.to_thread(client.embeddings.create, model="orqen/cheap", input="x")
    assert "Routing strings" in refused.value.message


async def test_missing_model_and_bad_bodies_answer_openai_errors(stack: Any) -> None:
    headers = {"authorization": f"Bearer {stack.info.api_key}"}
    async with httpx.AsyncClient(base_url=stack.info.edge_url, headers=headers) as http:
        missing = await http.post("/v3/router/embeddings", json={"input": "x"})
        assert missing.status_code == 400
        assert missing.json()["error"]["message"] == "'model' is required for /v1/embeddings."
        not_form = await http.post("/v1/audio/transcriptions", json={"model": "whisper-1"})
        assert not_form.status_code == 415 and not_form.json()["error"]["type"] == "invalid_request_error"
        broken = await http.post(
            "/v1/audio/transcriptions",
            content=b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b\r\ngarbage',
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert broken.status_code == 400 and "multipart" in broken.json()["error"]["message"]
        unauthenticated = await http.post("/v2/proxy/embeddings", json={"model": "m"}, headers={"authorization": ""})
        assert unauthenticated.status_code == 401


async def test_upstream_errors_reach_the_caller_in_openai_shape(stack: Any) -> None:
    """A wrong X-Orqen-Provider-Key wins over the operator's key, so the upstream refuses it."""
    with pytest.raises(openai.AuthenticationError) as refused:
        await asyncio.to_thread(
            _client(stack, "/v2/proxy").embeddings.create,
            model="text-embedding-3-small",
            input="x",
            extra_headers={"X-Orqen-Provider-Key": "sk-not-the-upstream-key"},
        )
    assert "Incorrect API key provided" in refused.value.message
    with pytest.raises(openai.AuthenticationError):  # refused before the upload was read: still its error
        await asyncio.to_thread(
            _client(stack).audio.transcriptions.create,
            model="whisper-1",
            file=("a.mp3", b"\1" * 3_000_000, "audio/mpeg"),
            extra_headers={"X-Orqen-Provider-Key": "sk-not-the-upstream-key"},
        )
    with pytest.raises(openai.UnprocessableEntityError):
        await asyncio.to_thread(
            _client(stack).post, "/rerank", body={"model": "local/r", "query": "q"}, cast_to=httpx.Response
        )


@pytest.mark.parametrize("base", BASES)
async def test_object_lifecycle_apis_are_intentionally_not_proxied(stack: Any, base: str) -> None:
    client = _client(stack, base)
    with pytest.raises(openai.NotFoundError) as refused:
        await asyncio.to_thread(client.files.list)
    assert "intentionally not proxied" in refused.value.message
    with pytest.raises(openai.NotFoundError) as refused:
        await asyncio.to_thread(client.batches.retrieve, "batch_123")
    assert "intentionally not proxied" in refused.value.message
    with pytest.raises(openai.NotFoundError) as refused:
        await asyncio.to_thread(client.vector_stores.create, name="kb")
    assert "intentionally not proxied" in refused.value.message


@pytest.mark.parametrize("base", ["/v2/proxy", "/v3/router"])
async def test_chat_and_models_under_the_orq_bases(stack: Any, base: str) -> None:
    client = _client(stack, base)
    completion = await asyncio.to_thread(
        client.chat.completions.create, model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}]
    )
    assert completion.choices[0].message.content == "echo: hi there"
    models = await asyncio.to_thread(client.models.list)
    assert "gpt-4o-mini" in {m.id for m in models.data}
    model = await asyncio.to_thread(client.models.retrieve, "gpt-4o-mini")
    assert model.id == "gpt-4o-mini"


UPLOAD_BYTES = 25 * 1024 * 1024
# What the edge or dispatch may grow by while a 25 MB upload passes: a few frames, buffers and
# gRPC's flow-control window, far below one copy of the file.
MAX_GROWTH_BYTES = 12 * 1024 * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux /proc memory counters")
async def test_a_25_mb_upload_streams_through_in_bounded_memory(stack: Any) -> None:
    audio = hashlib.sha256(b"big").digest() * (UPLOAD_BYTES // 32)
    services = {name: stack.pids[name] for name in ("edge", "dispatch")}
    # A warm-up upload first: what stays allocated afterwards (pools, allocator arenas) is not per-upload memory.
    client = _client(stack)
    await asyncio.to_thread(
        client.audio.transcriptions.create, model="whisper-1", file=("warm.mp3", audio, "audio/mpeg")
    )
    baseline = {}
    for name, pid in services.items():
        reset_peak_rss(pid)
        baseline[name] = rss(pid)[1]
    transcript = await asyncio.to_thread(
        client.audio.transcriptions.create, model="whisper-1", file=("big.mp3", audio, "audio/mpeg")
    )
    assert transcript.text == f"Transcribed big.mp3 ({UPLOAD_BYTES} bytes, sha256 {hashlib.sha256(audio).hexdigest()})"
    growth = {name: rss(pid)[0] - baseline[name] for name, pid in services.items()}
    print(f"peak RSS growth during a {UPLOAD_BYTES} byte upload: {growth}")
    assert all(g < MAX_GROWTH_BYTES for g in growth.values()), growth
