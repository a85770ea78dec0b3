"""The story's servers: the chat page (web), the JSON API (api) and the WebSocket chat (chat)."""
