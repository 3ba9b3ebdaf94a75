"""audiosort.audio: decoding real files written with soundfile, int16 scaling, wav writing."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from audiosort.audio import (
    check_sample_rate,
    find_audio_files,
    from_int16,
    load,
    sha256_file,
    to_int16,
    write_wav,
)
from audiosort.errors import DecodeError, InputError, is_int

ONE_STEP = 1 / 32768


def _sine(frequency_hz, *, seconds, sample_rate, amplitude=0.5):
    time_seconds = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency_hz * time_seconds)).astype(np.float32)


def _peak_hz(y, *, sample_rate):
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.argmax(spectrum) * sample_rate / len(y)


def _write_valid_wav(path, *, seconds=1.0, sample_rate=16000):
    soundfile.write(path, _sine(440, seconds=seconds, sample_rate=sample_rate), sample_rate, subtype="PCM_16")


@pytest.mark.parametrize(
    "suffix, container, subtype, file_rate",
    [
        (".wav", "WAV", "PCM_16", 44100),
        (".flac", "FLAC", "PCM_16", 44100),
        (".ogg", "OGG", "VORBIS", 44100),
        (".opus", "OGG", "OPUS", 48000),
        (".mp3", "MP3", "MPEG_LAYER_III", 44100),
    ],
)
def test_each_libsndfile_format_decodes_to_mono_float32_at_target_rate(
    tmp_path, suffix, container, subtype, file_rate
):
    if subtype not in soundfile.available_subtypes(container):
        pytest.skip(f"this libsndfile cannot write {container}/{subtype}")
    path = tmp_path / f"tone{suffix}"
    tone = _sine(440, seconds=1.0, sample_rate=file_rate)
    soundfile.write(path, tone, file_rate, format=container, subtype=subtype)

    y = load(path, sample_rate=16000)

    assert y.dtype == np.float32 and y.ndim == 1
    # Lossy codecs may add or trim a few ms of encoder delay.
    assert abs(len(y) - 16000) <= 160
    assert abs(_peak_hz(y, sample_rate=16000) - 440) <= 2
    assert 0.4 < np.abs(y).max() <= 1.0


def test_stereo_is_averaged_to_mono(tmp_path):
    left = _sine(300, seconds=0.5, sample_rate=16000, amplitude=0.6)
    right = np.full_like(left, 0.2)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")

    y = load(path, sample_rate=16000)

    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)


def test_resampling_44100_to_16000_keeps_pitch_and_duration(tmp_path):
    path = tmp_path / "tone.wav"
    soundfile.write(path, _sine(1000, seconds=2.0, sample_rate=44100), 44100, subtype="FLOAT")

    y = load(path, sample_rate=16000)

    assert abs(len(y) - 32000) <= 2
    assert abs(_peak_hz(y, sample_rate=16000) - 1000) <= 1


def test_int16_round_trip_is_within_one_step():
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.uniform(-1, 1, 100_000), [-1.0, 0.0, 1.0, 32767 / 32768]]).astype(np.float32)

    assert np.abs(from_int16(to_int16(y)) - y).max() <= ONE_STEP


def test_from_int16_then_to_int16_is_identity():
    every_value = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)

    np.testing.assert_array_equal(to_int16(from_int16(every_value)), every_value)
    assert from_int16(every_value).dtype == np.float32


def test_to_int16_rounds_to_nearest_and_clips():
    y = np.array([1.0, 2.0, -1.0, -2.0, 0.4 * ONE_STEP, 0.6 * ONE_STEP, -0.6 * ONE_STEP])

    np.testing.assert_array_equal(to_int16(y), [32767, 32767, -32768, -32768, 0, 1, -1])


def test_to_int16_rejects_non_finite_and_integer_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        to_int16(np.array([0.0, np.nan]))
    with pytest.raises(TypeError, match="int16"):
        from_int16(np.array([1, 2], dtype=np.int32))
    with pytest.raises(TypeError, match="floating"):
        to_int16(np.array([1, 2], dtype=np.int16))


def test_write_wav_then_load_is_exact_at_int16_precision(tmp_path):
    y = _sine(440, seconds=0.25, sample_rate=16000, amplitude=0.9)
    path = tmp_path / "out.wav"

    write_wav(path, y, sample_rate=16000)

    info = soundfile.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
    np.testing.assert_array_equal(load(path, sample_rate=16000), from_int16(to_int16(y)))


def test_write_wav_writes_int16_as_is(tmp_path):
    x = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    path = tmp_path / "out.wav"

    write_wav(path, x, sample_rate=8000)

    np.testing.assert_array_equal(soundfile.read(path, dtype="int16")[0], x)


def test_write_wav_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "nested" / "out.wav"
    write_wav(path, np.zeros(100, dtype=np.float32), sample_rate=16000)
    write_wav(path, np.full(50, 0.5, dtype=np.float32), sample_rate=16000)

    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]
    assert soundfile.info(path).frames == 50


def test_write_wav_leaves_no_temp_file_when_the_write_fails(tmp_path):
    target_is_a_folder = tmp_path / "out.wav"
    target_is_a_folder.mkdir()

    with pytest.raises(InputError, match="cannot write"):
        write_wav(target_is_a_folder, np.zeros(10, dtype=np.float32), sample_rate=16000)

    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_write_wav_rejects_multichannel_input(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(10, 2\)"):
        write_wav(tmp_path / "out.wav", np.zeros((10, 2), dtype=np.float32), sample_rate=16000)


def test_random_bytes_named_wav_is_a_decode_error(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))

    with pytest.raises(DecodeError, match="^cannot decode: "):
        load(path, sample_rate=16000)


def test_truncated_wav_is_a_decode_error_saying_how_much_is_there(tmp_path):
    # libsndfile would decode the part that is there; a cut-off download must not pass for the whole track.
    path = tmp_path / "cut.wav"
    _write_valid_wav(path, seconds=1.0, sample_rate=16000)
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 3])

    with pytest.raises(DecodeError, match=r"^truncated WAV: the header declares 32000 bytes of audio, the file holds 10666 \(33%\)"):
        load(path, sample_rate=16000)


def test_wav_streamed_with_unknown_length_still_decodes(tmp_path):
    path = tmp_path / "stream.wav"
    _write_valid_wav(path, seconds=1.0, sample_rate=16000)
    data = bytearray(path.read_bytes())
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))

    assert abs(len(load(path, sample_rate=16000)) - 16000) <= 1


def test_header_only_wav_is_a_decode_error(tmp_path):
    path = tmp_path / "header.wav"
    _write_valid_wav(path)
    path.write_bytes(path.read_bytes()[:44])

    with pytest.raises(DecodeError, match=r"truncated WAV: .* the file holds 0 \(0%\)"):
        load(path, sample_rate=16000)


def test_empty_file_is_a_decode_error(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")

    with pytest.raises(DecodeError, match="empty file"):
        load(path, sample_rate=16000)


def test_text_file_named_mp3_is_a_one_line_decode_error(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("this is not audio\n" * 100)

    with pytest.raises(DecodeError) as caught:
        load(path, sample_rate=16000)

    message = str(caught.value)
    assert message.startswith("cannot decode: ")
    assert "\n" not in message and len(message) <= 200
    assert "does not exist" not in message


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(DecodeError, match="no such file"):
        load(tmp_path / "absent.wav", sample_rate=16000)


def test_nan_samples_are_a_decode_error(tmp_path):
    path = tmp_path / "nan.wav"
    soundfile.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")

    with pytest.raises(DecodeError, match="non-finite"):
        load(path, sample_rate=16000)


def test_load_rejects_a_bad_sample_rate(tmp_path):
    path = tmp_path / "tone.wav"
    _write_valid_wav(path)

    with pytest.raises(InputError, match="16000.0"):
        load(path, sample_rate=16000.0)


def test_find_audio_files_walks_sorted_and_skips_hidden_and_non_audio(tmp_path):
    music = tmp_path / "music"
    names = ["b.wav", "a/z.flac", "a/B.MP3", "a-c.ogg", "notes.txt", ".hidden.wav", ".git/x.wav", "a/.cache/y.wav"]
    for relative in names:
        (music / relative).parent.mkdir(parents=True, exist_ok=True)
        (music / relative).write_bytes(b"")
    extra = tmp_path / "extra.dat"
    extra.write_bytes(b"")

    pairs = find_audio_files([music, str(extra)])

    assert [(root, file.relative_to(root).as_posix()) for root, file in pairs] == [
        (music, "a/B.MP3"),
        (music, "a/z.flac"),
        (music, "a-c.ogg"),
        (music, "b.wav"),
        (tmp_path, "extra.dat"),
    ]


def test_find_audio_files_lists_a_file_reached_twice_once(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")

    pairs = find_audio_files([tmp_path, tmp_path / "a.wav"])

    assert pairs == [(tmp_path, tmp_path / "a.wav")]


def test_find_audio_files_names_a_missing_path(tmp_path):
    missing = tmp_path / "nowhere"

    with pytest.raises(InputError, match=f"no such file or folder: {missing}"):
        find_audio_files([missing])


def test_sha256_file_matches_hashlib_across_blocks(tmp_path):
    path = tmp_path / "blob.bin"
    data = np.random.default_rng(0).bytes(3 * 1024 * 1024 + 17)
    path.write_bytes(data)

    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_models_and_puzzles_import_no_codec():
    # The int16 form lives in audiosort.pcm: a model or a sampler loads neither librosa, soundfile nor soxr.
    code = (
        "import sys, audiosort.pcm, audiosort.models.layers, audiosort.data.puzzles; "
        "print(sorted(m for m in ('librosa', 'soundfile', 'soxr', 'audiosort.audio') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_an_int_is_a_python_or_numpy_integer_but_never_a_bool():
    assert is_int(3) and is_int(np.int64(3)) and is_int(np.uint8(3))
    assert not any(is_int(value) for value in (True, np.bool_(True), 3.0, "3", None))
    check_sample_rate(np.int32(16000))
    with pytest.raises(InputError, match="positive int"):
        check_sample_rate(True)
