"""Network and acoustic impairments applied to what the simulated caller sends.

Everything is drawn from one seeded generator per call, so a run with the same seed and
the same packet sequence makes the same decisions: which packets are lost, how late each
one leaves, and the exact background noise samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phoneagent.runtime.errors import InvalidArgument

# The caller's speech is normalised to this active level before noise is added.
SPEECH_DBFS = -20.0


@dataclass(frozen=True)
class Impairments:
    """``jitter_ms``: each packet leaves up to this much late (uniform); ``loss_pct``: share of
    packets dropped; ``snr_db``: background noise this far below the speech level (None: none);
    ``greets_first``: the caller speaks first when the call is answered (as a callee would)."""

    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    snr_db: float | None = None
    seed: int = 0
    greets_first: bool = False

    def validate(self) -> Impairments:
        if not 0 <= self.jitter_ms <= 1000:
            raise InvalidArgument("jitter must be between 0 and 1000 ms")
        if not 0 <= self.loss_pct < 100:
            raise InvalidArgument("packet loss must be between 0 and 100 percent (exclusive)")
        if self.snr_db is not None and not -10 <= self.snr_db <= 80:
            raise InvalidArgument("SNR must be between -10 and 80 dB")
        return self

    @property
    def active(self) -> bool:
        return self.jitter_ms > 0 or self.loss_pct > 0 or self.snr_db is not None


@dataclass
class PacketFate:
    drop: bool
    delay_s: float


@dataclass
class ImpairStats:
    packets: int = 0
    dropped: int = 0
    delays_s: list[float] = field(default_factory=list)

    @property
    def loss_rate(self) -> float:
        return self.dropped / self.packets if self.packets else 0.0


class Impairer:
    """Decides the fate of each outgoing packet and makes the background noise."""

    def __init__(self, impairments: Impairments) -> None:
        self.impairments = impairments.validate()
        self._net = np.random.default_rng([impairments.seed, 1])
        self._noise = np.random.default_rng([impairments.seed, 2])
        self.stats = ImpairStats()

    def packet(self) -> PacketFate:
        """Fate of the next packet (always draws both numbers, so decisions stay aligned)."""
        loss_draw, jitter_draw = self._net.random(2)
        drop = bool(loss_draw * 100 < self.impairments.loss_pct)
        delay = float(jitter_draw * self.impairments.jitter_ms / 1000.0)
        self.stats.packets += 1
        if drop:
            self.stats.dropped += 1
        else:
            self.stats.delays_s.append(delay)
        return PacketFate(drop, delay)

    def add_noise(self, pcm: np.ndarray) -> np.ndarray:
        """``pcm`` (int16) with background noise mixed in at the configured SNR."""
        if self.impairments.snr_db is None:
            return pcm
        rms = noise_rms(self.impairments.snr_db)
        noise = self._noise.normal(0.0, rms, len(pcm))
        mixed = pcm.astype(np.float64) + noise
        return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


def dbfs_to_rms(dbfs: float) -> float:
    return float(32768.0 * 10 ** (dbfs / 20.0))


def noise_rms(snr_db: float) -> float:
    return dbfs_to_rms(SPEECH_DBFS - snr_db)


def normalise_speech(pcm: np.ndarray, target_dbfs: float = SPEECH_DBFS) -> np.ndarray:
    """Scale int16 speech so its active level (RMS over frames above -50 dBFS) is ``target_dbfs``."""
    level = active_rms(pcm)
    if level <= 0:
        return pcm
    gain = dbfs_to_rms(target_dbfs) / level
    return np.clip(np.round(pcm.astype(np.float64) * gain), -32768, 32767).astype(np.int16)


def active_rms(pcm: np.ndarray, frame: int = 160, floor_dbfs: float = -50.0) -> float:
    """RMS over the 20 ms frames that carry sound (silence between words does not count)."""
    x = pcm.astype(np.float64)
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    frames = x[: n * frame].reshape(n, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = rms[rms > dbfs_to_rms(floor_dbfs)]
    return float(np.sqrt(np.mean(loud**2))) if len(loud) else 0.0


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR of ``noisy`` against the ``clean`` signal it was made from (for checks and reports)."""
    noise = noisy.astype(np.float64) - clean.astype(np.float64)
    p_noise = float(np.mean(noise**2))
    p_sig = active_rms(clean) ** 2
    if p_noise == 0:
        return float("inf")
    return float(10 * np.log10(p_sig / p_noise))
