"""Test fakes: the OpenAI-compatible echo servers (real HTTP on 127.0.0.1, scripted faults). Not in the package."""
