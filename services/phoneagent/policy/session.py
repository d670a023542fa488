"""One call's policy session: the AI disclosure gate on every sentence, the live rules on the
caller's finals (opt-out, escalation, recording consent), the state a takeover needs, and the
replay of what a dead owner had not handled (see :class:`PolicyCallSession`)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from phoneagent.agents.human_claims import HUMAN_CLAIM_REPLACEMENT, human_claim
from phoneagent.policy.call_rules import DisclosureGuard
from phoneagent.policy.live import LiveRules, Verdict
from phoneagent.runtime import subjects, telemetry
from phoneagent.runtime.bus import Delivery, Lane, Subscription
from phoneagent.runtime.enums import enum_name
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.sessions import CALL_ENDED
from phoneagent.v1 import control_pb2, policy_pb2, session_pb2, speech_pb2

if TYPE_CHECKING:
    from phoneagent.policy.service import PolicyService

log = logging.getLogger(__name__)
REPLAY_WAIT_S = 2.0  # a takeover's replay waits this long for the next stored event


class PolicyCallSession:
    """One call: gates replies (AI disclosure) and applies the live rules (:mod:`.live`).

    The gate's state (disclosure heard or pending, the last reply passed on, the recording
    notice given) is saved in ``pa_policy_calls`` as it changes. A replica taking the call over
    restores it, then replays from PA_REPLAY what the dead owner had not handled (its replies,
    the playback reports and the caller's final transcripts) before it goes on live: no sentence
    is lost in the takeover, the disclosure is neither said twice nor skipped, and an opt-out or
    a request for a person said meanwhile is acted on once.
    """

    def __init__(self, svc: PolicyService, claim: session_pb2.SessionClaim, taken_over: bool = False) -> None:
        self.svc = svc
        self.call_id = claim.call.meta.call_id
        self.taken_over = taken_over
        self.guard = DisclosureGuard(svc.disclosure)
        self.subs: list[Subscription[Any]] = []
        assert svc.stores is not None
        self.rules = LiveRules(
            claim.call,
            svc.stores.dnc,
            transfer_available=svc.transfer_available,
            transfer_target=svc.transfer_target,
            escalation=svc.escalation,
            recording=svc.recording,
            open_at=svc.open_at,
        )
        self.last_reply = (-1, -1)  # (generation, sentence_seq) of the last reply handled
        self.last_turn = 0  # turn id of the last caller final handled
        self._live = asyncio.Event()  # set once a takeover has replayed what it missed
        self._saved = b""

    async def start(self) -> None:
        # The call's transcripts and tool records are copied here from now on (before the
        # subscriptions below: the copier's own, service-wide ones are live already).
        self.svc.record_copier.own(self.call_id)
        try:
            if self.taken_over:
                await self._restore()
            else:
                self._live.set()
            await self._subscribe()  # live events wait (queued) until the replay is done
            if self.taken_over:
                await self._replay()
                self._live.set()
        except BaseException:
            self.svc.record_copier.release(self.call_id, ended=False)  # the claim is given up
            raise

    async def _subscribe(self) -> None:
        bus = self.svc.bus
        self.subs.append(
            await bus.subscribe(
                subjects.reply(self.call_id), speech_pb2.AgentText, self.on_reply, max_pending=512
            )
        )
        self.subs.append(
            await bus.subscribe(subjects.transcript(self.call_id), speech_pb2.Transcript, self.on_transcript)
        )
        self.subs.append(
            await bus.subscribe(
                subjects.control(self.call_id), control_pb2.ControlEvent, self.on_control, lane=Lane.CONTROL
            )
        )

    # --- state kept for a takeover -------------------------------------------------------------
    def _state(self) -> bytes:
        return json.dumps(
            {
                "guard": self.guard.snapshot(),
                "last_reply": list(self.last_reply),
                "last_turn": self.last_turn,
                "recording_announced": self.rules.recording_announced,
                "finished": self.rules.finished,
            },
            sort_keys=True,
        ).encode()

    async def _save(self) -> None:
        state = self._state()
        if state == self._saved or self.svc.call_state is None:
            return
        try:
            await self.svc.call_state.put(self.call_id, state)
            self._saved = state
        except Exception as exc:  # a later change saves it again; the call goes on meanwhile
            log.warning(
                "policy call state not saved", extra={"call_id": self.call_id, "error": type(exc).__name__}
            )

    async def _restore(self) -> None:
        if self.svc.call_state is None:
            return
        try:
            entry = await self.svc.call_state.get(self.call_id)
            saved = json.loads(entry.value or b"{}")
        except (KeyNotFoundError, KeyDeletedError):
            return  # the previous owner had nothing to save yet
        except Exception as exc:
            log.warning(
                "policy call state not read", extra={"call_id": self.call_id, "error": type(exc).__name__}
            )
            return
        if not isinstance(saved, dict):
            return
        self.guard.restore(saved.get("guard") or {})
        last = saved.get("last_reply")
        if isinstance(last, list) and len(last) == 2 and all(isinstance(v, int) for v in last):
            self.last_reply = (last[0], last[1])
        turn = saved.get("last_turn")
        if isinstance(turn, int) and not isinstance(turn, bool):
            self.last_turn = turn
        self.rules.recording_announced = bool(saved.get("recording_announced"))
        self.rules.finished = bool(saved.get("finished"))
        self._saved = self._state()
        log.info(
            "policy call state restored", extra={"call_id": self.call_id, "disclosed": self.guard.disclosed}
        )

    async def _replay(self) -> None:
        """Handle, in order, the call's replies and playback reports that PA_REPLAY holds; those
        handled already (by the dead owner, as its saved state says) are skipped."""
        js = self.svc.bus.jetstream()
        config = ConsumerConfig(
            filter_subjects=subjects.replay(self.call_id), deliver_policy=DeliverPolicy.ALL
        )
        replayed = 0
        try:
            sub = await js.subscribe(
                subjects.reply(self.call_id),
                stream=subjects.REPLAY_STREAM,
                ordered_consumer=True,
                config=config,
            )
        except Exception as exc:
            log.warning(
                "takeover replay unavailable", extra={"call_id": self.call_id, "error": type(exc).__name__}
            )
            return
        try:
            # What the call has in the stream now: pushed to us already, or still to come.
            info = await sub.consumer_info()
            left = info.num_pending + info.delivered.consumer_seq
            while left > 0:
                msg = await sub.next_msg(timeout=REPLAY_WAIT_S)
                left -= 1
                delivery = Delivery(msg.subject, "", dict(msg.headers or {}))
                if msg.subject == subjects.reply(self.call_id):
                    text = speech_pb2.AgentText()
                    text.ParseFromString(msg.data)
                    replayed += await self._reply(text, delivery)
                elif msg.subject == subjects.transcript(self.call_id):
                    await self._transcript(speech_pb2.Transcript.FromString(msg.data))
                else:
                    event = control_pb2.ControlEvent()
                    event.ParseFromString(msg.data)
                    await self._control(event)
        except Exception as exc:  # what is left is lost; the call goes on live
            log.warning(
                "takeover replay cut short", extra={"call_id": self.call_id, "error": type(exc).__name__}
            )
        finally:
            await sub.unsubscribe()
        log.info("takeover replayed", extra={"call_id": self.call_id, "replies": replayed})

    # --- live events ---------------------------------------------------------------------------
    async def on_reply(self, msg: speech_pb2.AgentText, d: Delivery) -> None:
        await self._live.wait()
        await self._reply(msg, d)

    async def _reply(self, msg: speech_pb2.AgentText, d: Delivery) -> int:
        """Gate one reply sentence; 1 when it was handled now, 0 when it had been already."""
        key = (msg.meta.generation_id, msg.sentence_seq)
        if key <= self.last_reply:
            return 0  # replayed and live both, or handled by the previous owner
        self.last_reply = key
        await self._gate(msg, d)
        await self._save()
        return 1

    async def _gate(self, msg: speech_pb2.AgentText, d: Delivery) -> None:
        out = speech_pb2.AgentText()
        out.CopyFrom(msg)
        generation = msg.meta.generation_id
        claim = human_claim(msg.text)
        if claim is not None:
            out.text = HUMAN_CLAIM_REPLACEMENT
            try:
                await self.svc.audit(
                    self.call_id,
                    policy_pb2.DECISION_DENY,
                    "disclosure",
                    "human_claim",
                    "agent sentence claimed to be a person; replaced",
                    details={"claim": claim, "generation": str(generation)},
                )
            except Exception:  # noqa: BLE001 - fail closed: nothing is said unaudited
                log.exception("human claim not audited; sentence withheld", extra={"call_id": self.call_id})
                return
        if out.text.strip() and self.guard.needs_disclosure(generation):
            out.text = self.guard.apply(out.text)
            try:
                await self.svc.audit(
                    self.call_id,
                    policy_pb2.DECISION_ALLOW,
                    "disclosure",
                    "ai_disclosure",
                    "AI disclosure prepended to the first utterance",
                )
            except Exception:  # noqa: BLE001 - fail closed: nothing is said unaudited
                log.exception("disclosure not audited; sentence withheld", extra={"call_id": self.call_id})
                return
            self.guard.published(generation, msg.sentence_seq, out.text)
        self.rules.on_agent_text(msg.text)
        # The turn's trace (on the first sentence of a reply) goes on to TTS through this hop.
        with telemetry.continue_trace(d.headers, "policy.say", call_id=self.call_id, generation=generation):
            await self.svc.bus.publish(subjects.say(self.call_id), out, trace=True)
        await self.svc.record_copies.say(self.call_id, out)

    async def on_transcript(self, tr: speech_pb2.Transcript, _: Delivery) -> None:
        if not tr.final or tr.backchannel:
            return
        await self._live.wait()
        await self._transcript(tr)

    async def _transcript(self, tr: speech_pb2.Transcript) -> None:
        """Apply the live rules to one caller final, once (replayed and live both arrive after
        a takeover; turn ids only grow within a call, 0 is a final without one)."""
        turn = tr.meta.turn_id
        if not tr.final or tr.backchannel or (turn and turn <= self.last_turn):
            return
        self.last_turn = max(self.last_turn, turn)
        verdicts = await asyncio.to_thread(
            self.rules.on_transcript, tr.text, tr.meta.turn_id, self.svc.clock()
        )
        for verdict in verdicts:
            await self._apply(verdict)
        await self._save()

    async def on_control(self, ev: control_pb2.ControlEvent, _: Delivery) -> None:
        await self._live.wait()
        await self._control(ev)
        await self._save()

    async def _control(self, ev: control_pb2.ControlEvent) -> None:
        kind = ev.WhichOneof("kind")
        if kind == "playback_done":
            self.guard.on_playback_done(ev.playback_done.generation_id)
            if not self.guard.disclosed:
                return  # the recording notice follows the disclosure, never replaces it
            verdict = self.rules.on_playback_done()
            if verdict is not None:
                await self._apply(verdict)
        elif kind == "barge_in":
            b = ev.barge_in
            self.guard.on_barge_in(b.interrupted_generation_id, b.heard_sentence_seq, b.heard_text_chars)
        elif kind == "cancel":
            self.guard.on_cancel(ev.cancel.generation_id)

    async def _apply(self, verdict: Verdict) -> None:
        if verdict.audit is not None:
            a = verdict.audit
            await self.svc.audit(
                self.call_id, a.decision, a.subject, a.rule, a.reason, number=a.number, details=a.details
            )
        if verdict.directive is not None:
            ev = control_pb2.ControlEvent(
                meta=new_meta(self.call_id, f"policy/{self.svc.replica}", turn_id=verdict.directive.turn_id),
                directive=verdict.directive,
            )
            await self.svc.bus.publish(subjects.control(self.call_id), ev, lane=Lane.CONTROL)
            log.info(
                "policy directive",
                extra={
                    "call_id": self.call_id,
                    "rule": verdict.directive.rule,
                    "action": enum_name(control_pb2.DirectiveAction, verdict.directive.action),
                },
            )

    async def close(self, reason: str) -> None:
        # Unspoken replies are dropped. Transcripts and tool records still on their way are
        # copied by the replica's copier, which outlives this session (:mod:`.record_copy`).
        self.svc.record_copier.release(self.call_id, ended=reason == CALL_ENDED)
        for sub in self.subs:
            await self.svc.bus.unsubscribe(sub)
        if reason == CALL_ENDED and self.svc.call_state is not None:
            try:  # nothing of the call is kept once it is over
                await self.svc.call_state.delete(self.call_id)
            except Exception as exc:
                log.info(
                    "policy call state not deleted",
                    extra={"call_id": self.call_id, "error": type(exc).__name__},
                )
