"""WebRTC calls: a browser page that talks to the agent through the edge's call flow.

``WebRtcGateway`` serves the page and the signalling API on its own aiohttp application
(PA_WEB_HOST:PA_WEB_PORT); each browser call becomes an :class:`~phoneagent.edge.callflow.EdgeCall`
whose transport is a peer connection (aiortc, part of the ``edge`` extra).
"""
