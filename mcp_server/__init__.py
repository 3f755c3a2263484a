"""The surfaces: CLI now; MCP tools, resources and prompts, and the HTTP app build on `engine.Engine`."""
