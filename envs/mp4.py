"""Real videos: mp4 files listed in a V-JEPA style CSV (``<path> <label>`` per line), decoded with PyAV.

``check_clip_csv`` looks at every listed file before training, ``Mp4Clips`` serves fixed-size
clips, and ``write_mp4`` encodes frames (for tests and for users making their own files).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from envs.clips import normalise

_ENCODER_PREFERENCE = ("libx264", "mpeg4")


@lru_cache(maxsize=1)
def _available_encoder() -> str:
    """First encoder this PyAV/FFmpeg build can actually write with."""
    import av

    for name in _ENCODER_PREFERENCE:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # PyAV raises UnknownCodecError or ValueError depending on version
            continue
        return name
    raise RuntimeError(f"PyAV has none of the encoders {_ENCODER_PREFERENCE}")


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("frames is empty")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even height and width, got {height}x{width}")


def write_mp4(path: Path, frames: np.ndarray, fps: int = 8, codec: str | None = None) -> None:
    """Encode uint8 [T, H, W, 3] RGB frames as an mp4 (libx264 if present, else mpeg4)."""
    import av

    frames = np.asarray(frames)
    _check_frames(frames)
    codec = codec or _available_encoder()
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "16"}
        else:
            stream.bit_rate = max(width * height * fps * 8, 200_000)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush delayed frames


def _parse_clip_line(line: str, csv_path: Path, line_number: int) -> tuple[Path, int]:
    parts = line.rsplit(maxsplit=1)
    if len(parts) != 2 or not parts[1].isdigit():
        raise ValueError(
            f"{csv_path}, line {line_number}: expected '<path> <non-negative integer label>', "
            f"got {line!r}"
        )
    video_path = Path(parts[0]).expanduser()
    if not video_path.is_absolute():
        video_path = csv_path.parent / video_path
    return video_path, int(parts[1])


def _read_clip_csv(csv_path: Path) -> list[tuple[Path, int, int]]:
    """(video path, label, line number) for each non-blank line of a V-JEPA CSV."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"Clip list {csv_path} does not exist")
    entries = []
    for line_number, line in enumerate(csv_path.read_text().splitlines(), start=1):
        if line.strip():
            entries.append((*_parse_clip_line(line.strip(), csv_path, line_number), line_number))
    if not entries:
        raise ValueError(f"Clip list {csv_path} lists no videos")
    return entries


def _decode_first_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames from the start of the video, stopping early."""
    import av

    decoded = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        for frame in container.decode(container.streams.video[0]):
            decoded.append(frame.to_ndarray(format="rgb24"))
            if len(decoded) >= count:
                break
    if not decoded:
        raise ValueError(f"{path} has no decodable frames")
    return decoded


def check_clip_csv(csv_path: Path) -> list[tuple[Path, int, int]]:
    """The CSV's entries, once every listed video exists and decodes its first frame.

    A quick look before training (one frame per file), so a missing or truncated mp4 is
    named with its CSV line instead of failing a trial midway.
    """
    import av

    csv_path = Path(csv_path)
    entries = _read_clip_csv(csv_path)
    for video_path, _, line_number in entries:
        where = f"{video_path} (listed in {csv_path}, line {line_number})"
        if not video_path.is_file():
            raise FileNotFoundError(f"Video {where} does not exist")
        try:
            _decode_first_frames(video_path, 1)
        except (av.error.FFmpegError, ValueError) as err:
            raise ValueError(f"Video {where} cannot be decoded ({err})") from None
    return entries


def _resize(video: torch.Tensor, size: int) -> torch.Tensor:
    """Float [T, 3, H, W] to [T, 3, size, size]; antialiased when shrinking."""
    if video.shape[-2:] == (size, size):
        return video
    shrinking = min(video.shape[-2:]) > size
    return F.interpolate(
        video, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )


class Mp4Clips(Dataset):
    """Videos listed in a V-JEPA style CSV (``<path> <label>`` per line) as fixed-size clips.

    Each item takes ``frames`` frames from the start of the video with stride
    ``frame_step`` (repeating the last frame of short videos) resized to
    ``size`` x ``size``.
    """

    def __init__(self, csv_path: Path, frames: int, size: int, frame_step: int = 1):
        if frames < 1 or size < 1 or frame_step < 1:
            raise ValueError(f"frames, size and frame_step must be >= 1, got {frames}, {size}, {frame_step}")
        self.csv_path = Path(csv_path)
        self.frames = frames
        self.size = size
        self.frame_step = frame_step
        self._entries = _read_clip_csv(self.csv_path)

    @property
    def labels(self) -> tuple[str, ...]:
        return ("label",)

    @property
    def num_classes(self) -> dict[str, int]:
        return {"label": max(label for _, label, _ in self._entries) + 1}

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video_path, label, line_number = self._entries[index]
        if not video_path.is_file():
            raise FileNotFoundError(
                f"Video {video_path} (listed in {self.csv_path}, line {line_number}) does not exist"
            )
        span = (self.frames - 1) * self.frame_step + 1
        decoded = _decode_first_frames(video_path, span)
        picks = np.minimum(np.arange(self.frames) * self.frame_step, len(decoded) - 1)
        video = torch.from_numpy(np.stack([decoded[i] for i in picks]))
        video = _resize(video.permute(0, 3, 1, 2).float(), self.size)
        video = normalise(video.permute(1, 0, 2, 3) / 255.0).contiguous()
        return {"video": video, "label": torch.tensor(label, dtype=torch.int64)}

