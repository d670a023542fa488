"""Our own SIP signalling core (RFC 3261 subset) for the edge service: pure asyncio, UDP and TCP.

The edge service uses :class:`UserAgent` (inbound calls via ``on_incoming_call``, outbound calls via
``call()``) and the SDP offer/answer functions in :mod:`phoneagent.edge.sip.sdp`.
"""

from phoneagent.edge.sip.auth import Credentials, DigestServer
from phoneagent.edge.sip.calls import CallFailed, CallOutcome, IncomingCall, OutboundCall
from phoneagent.edge.sip.dialog import Dialog, DialogHandlers
from phoneagent.edge.sip.headers import NameAddr, ParseError, SipURI
from phoneagent.edge.sip.sdp import MediaParams, NoCommonCodec, SessionDescription, answer, negotiated, offer
from phoneagent.edge.sip.sockets import TcpLimits
from phoneagent.edge.sip.transaction import Timers
from phoneagent.edge.sip.trunks import SourceRateLimit, Trunk, TrunkTable
from phoneagent.edge.sip.ua import UAConfig, UserAgent

__all__ = [
    "CallFailed",
    "CallOutcome",
    "Credentials",
    "Dialog",
    "DialogHandlers",
    "DigestServer",
    "IncomingCall",
    "MediaParams",
    "NameAddr",
    "NoCommonCodec",
    "OutboundCall",
    "ParseError",
    "SessionDescription",
    "SipURI",
    "SourceRateLimit",
    "TcpLimits",
    "Timers",
    "Trunk",
    "TrunkTable",
    "UAConfig",
    "UserAgent",
    "answer",
    "negotiated",
    "offer",
]
