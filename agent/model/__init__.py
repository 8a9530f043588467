"""The model layer: one ChatModel interface over the embedded llama.cpp model and any
OpenAI-compatible endpoint, and the verified embedded weights. The only user of `openai`."""
