"""The identity every event carries, built in one place.

Every data and control event names its call, the caller turn and agent generation it belongs
to (consumers drop what an older generation produced), when it was produced and by whom. A
producer builds it with :func:`new_meta`, so no event leaves without a timestamp and a
producer (``tests/runtime/test_runtime_meta.py`` checks that no stage builds one by hand).
"""

from __future__ import annotations

import time

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import common_pb2


def new_meta(
    call_id: str, producer: str, *, turn_id: int = 0, generation_id: int = 0
) -> common_pb2.EventMeta:
    """EventMeta for an event produced now by ``producer`` (``"asr/asr-7f9c"``, ``"edge"``).

    ``call_id`` may be empty for an event that belongs to no call yet (a refused dial).
    """
    if not producer:
        raise InvalidArgument("an event needs its producer")
    return common_pb2.EventMeta(
        call_id=call_id,
        turn_id=turn_id,
        generation_id=generation_id,
        ts_unix_ns=time.time_ns(),
        producer=producer,
    )
