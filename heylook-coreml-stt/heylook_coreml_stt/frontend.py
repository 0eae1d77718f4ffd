"""Whisper's log-mel front end in numpy: 16 kHz samples to the (n_mels, frames) features the encoder takes.

The same algorithm as OpenAI Whisper (and faster-whisper's ``FeatureExtractor``): a 400-sample Hann window
(25 ms) every 160 samples (10 ms), centred with reflection padding, power spectrum, Slaney mel filterbank, log10
clamped at 1e-10, floored at the maximum minus 8, then scaled as ``(x + 4) / 4``. The number of mel bins (80 or
128) and the window length in frames come from the encoder's input shape.
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """The Slaney-normalized mel filterbank, shape (n_mels, n_fft // 2 + 1) (librosa's ``mel`` defaults)."""
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    log_step = np.log(6.4) / 27.0

    def hz_to_mel(hz: float) -> float:
        return hz / f_sp if hz < min_log_hz else min_log_mel + np.log(hz / min_log_hz) / log_step

    mels = np.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2)
    freqs = f_sp * mels
    log_region = mels >= min_log_mel
    freqs[log_region] = min_log_hz * np.exp(log_step * (mels[log_region] - min_log_mel))
    widths = np.diff(freqs)
    ramps = freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2 : n_mels + 2] - freqs[:n_mels]))[:, None]
    return weights.astype(np.float32)


def log_mel(samples: np.ndarray, n_mels: int = 80, padding: int = 0) -> np.ndarray:
    """Log-mel features of ``samples`` (float32, 16 kHz) followed by ``padding`` zero samples: (n_mels, frames)."""
    audio = np.asarray(samples, dtype=np.float32)
    if padding:
        audio = np.pad(audio, (0, padding))
    half = N_FFT // 2
    audio = np.pad(audio, (half, half), mode="reflect" if audio.size > half else "constant")
    frames = 1 + (audio.size - N_FFT) // HOP_LENGTH
    strided = np.lib.stride_tricks.as_strided(
        audio, (frames, N_FFT), (HOP_LENGTH * audio.strides[0], audio.strides[0]), writeable=False
    )
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    spectrum = np.fft.rfft(strided * window, n=N_FFT, axis=-1).astype(np.complex64)
    power = (np.abs(spectrum[:-1]) ** 2).T  # Whisper drops the last frame
    mel = mel_filters(n_mels) @ power
    log_spec = np.log10(np.clip(mel, 1e-10, None))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def pad_or_trim(mel: np.ndarray, frames: int) -> np.ndarray:
    """``mel`` cut or zero-padded along time to exactly ``frames`` frames (the encoder's fixed input length)."""
    if mel.shape[-1] >= frames:
        return mel[..., :frames]
    return np.pad(mel, [(0, 0)] * (mel.ndim - 1) + [(0, frames - mel.shape[-1])])
