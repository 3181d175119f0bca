"""`seal serve`: the chat that learns, over HTTP, for several users.

users.py    API keys (only their hashes are stored) and the users they name
slots.py    users' adapters as LoRA slots of the one loaded base model (a small cache)
spaces.py   one user's namespace: their own state folder (documents, passages, adapters,
            budget, history), answered from in the model thread
worker.py   the one writer: a background thread that learns what the gate chose, user by user
engine.py   the model thread, the spaces and the worker together; what the endpoints call
app.py      the FastAPI app: OpenAI's /v1/chat/completions and /v1/models, memory endpoints,
            the web page (page.html)
client.py   `seal chat --url`: the terminal chat talking to a running server
run.py      the `seal serve` command
"""
