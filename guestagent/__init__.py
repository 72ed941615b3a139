"""Cellar's guest agent: the gRPC server that runs next to the engine in every instance.

Start it with ``python -m guestagent --engine postgresql``; build one in code with
:class:`guestagent.server.AgentServer`.
"""
