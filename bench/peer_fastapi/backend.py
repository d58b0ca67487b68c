"""Peer baseline: the FastAPI app a user would pick instead of ours.

Written the way the typical "stream LLM tokens over SSE with FastAPI" example is written
(official AsyncOpenAI SDK + sse-starlette's EventSourceResponse, served by uvicorn), and
deliberately not tuned. Do not optimise this file: it is the yardstick.

    OPENAI_BASE_URL=http://127.0.0.1:8900/v1 OPENAI_API_KEY=sk-fake \
        uvicorn backend:app --app-dir bench/peer_fastapi --host 127.0.0.1 --port 8001

    curl -N 'http://127.0.0.1:8001/chat/stream?prompt=hello'
"""

import os

from fastapi import FastAPI, Query
from fastapi.middleware.cors import CORSMiddleware
from openai import AsyncOpenAI
from sse_starlette.sse import EventSourceResponse

client = AsyncOpenAI(
    api_key=os.getenv("OPENAI_API_KEY"),
    base_url=os.getenv("OPENAI_BASE_URL"),
)
MODEL = os.getenv("OPENAI_MODEL", "gpt-4o-mini")

app = FastAPI(title="LLM SSE streaming")

app.add_middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_methods=["*"],
    allow_headers=["*"],
)


@app.get("/chat/stream")
async def chat_stream(prompt: str = Query(..., description="User prompt")):
    async def event_generator():
        try:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                stream=True,
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield {"event": "token", "data": chunk.choices[0].delta.content}
            yield {"event": "done", "data": "[DONE]"}
        except Exception as e:
            yield {"event": "error", "data": str(e)}

    return EventSourceResponse(event_generator())
