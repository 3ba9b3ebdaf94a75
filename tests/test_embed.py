"""audiosort embed: frames, timestamps and clip embeddings per file in one npz; skipped files; exit codes."""

import numpy as np
import pytest
import soundfile as sf

from audiosort import audio
from audiosort.embed import embed_files, frame, load_encoder
from audiosort.errors import InputError
from conftest import SAMPLE_RATE, run, write_music_files

CHUNK_SAMPLES = 800  # the tiny run's 0.05 s chunks at 16 kHz


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """Two 3 s stereo FLACs at 22.05 kHz (decoded to 48000 samples at 16 kHz)."""
    return write_music_files(tmp_path_factory.mktemp("songs"), 2, seconds=3.0)



def nonblank_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def test_embed_saves_frames_centre_timestamps_and_clip_per_file(tiny_run, songs, tmp_path):
    out = tmp_path / "emb.npz"
    result = run("embed", tiny_run, *songs, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout and result.stderr == ""
    with np.load(out) as data:
        assert data["files"].tolist() == [str(p) for p in songs]
        assert data["clip"].shape == (2, 16) and data["clip"].dtype == np.float32
        assert (int(data["sample_rate"]), int(data["chunk_samples"]), int(data["hop_samples"])) == (16000, 800, 800)
        assert data["skipped"].shape == (0,) and data["skipped_reasons"].shape == (0,)
        for k in range(2):
            embeddings, timestamps = data[f"embeddings_{k}"], data[f"timestamps_{k}"]
            assert embeddings.shape == (60, 16) and embeddings.dtype == np.float32  # 48000 / 800 frames end to end
            np.testing.assert_allclose(timestamps, (np.arange(60) * 800 + 400) / SAMPLE_RATE)
            np.testing.assert_allclose(data["clip"][k], embeddings.mean(axis=0), rtol=1e-6)
        assert not np.allclose(data["embeddings_0"], data["embeddings_1"])


def test_frame_embeddings_are_the_encoders_on_the_int16_chunks(tiny_run, songs, tmp_path):
    out = tmp_path / "emb.npz"
    embed_files(tiny_run, songs[:1], out=out, hop_seconds=0.02)
    pcm = audio.to_int16(audio.load(songs[0], sample_rate=SAMPLE_RATE))
    expected_frames = 1 + (len(pcm) - CHUNK_SAMPLES) // 320  # the last partial frame is dropped
    chunks = np.stack([pcm[k * 320 : k * 320 + CHUNK_SAMPLES] for k in range(expected_frames)])
    encoder = load_encoder(tiny_run).encoder
    with np.load(out) as data:
        assert int(data["hop_samples"]) == 320
        np.testing.assert_allclose(np.diff(data["timestamps_0"]), 0.02)
        np.testing.assert_allclose(data["embeddings_0"], encoder.predict(chunks, verbose=0), rtol=1e-4, atol=1e-5)


def test_short_missing_and_undecodable_files_are_skipped_and_recorded(tiny_run, songs, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(400, dtype=np.float32), SAMPLE_RATE)  # 0.025 s, half a chunk
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    missing = tmp_path / "missing.flac"
    out = tmp_path / "emb.npz"
    result = run("embed", tiny_run, short, songs[0], missing, junk, "--out", out)
    assert result.exit_code == 0, result.output
    warnings = nonblank_lines(result.stderr)
    assert len(warnings) == 3 and all(line.startswith("warning: skipped ") for line in warnings), result.stderr
    assert "shorter than one chunk" in warnings[0] and "no such file" in warnings[1]
    with np.load(out) as data:
        assert data["files"].tolist() == [str(songs[0])]
        assert data["skipped"].tolist() == [str(short), str(missing), str(junk)]
        assert "shorter than one chunk" in data["skipped_reasons"][0]
        assert "embeddings_0" in data and "embeddings_1" not in data


def test_a_folder_embeds_the_audio_files_under_it(tiny_run, songs, tmp_path):
    report = embed_files(tiny_run, [songs[0].parent], out=tmp_path / "emb.npz")
    assert report.files == [str(p) for p in songs] and report.frames == [60, 60] and report.skipped == []


def test_nothing_usable_exits_2_with_one_line_and_writes_nothing(tiny_run, tmp_path):
    out = tmp_path / "emb.npz"
    result = run("embed", tiny_run, tmp_path / "a.wav", tmp_path / "b.wav", "--out", out)
    assert result.exit_code == 2, result.output
    lines = nonblank_lines(result.stderr)
    assert len(lines) == 1 and "nothing to embed" in lines[0], result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["{song}", "--hop-seconds", "0.00001"], "less than one sample"),
        (["{song}", "--hop-seconds", "-1"], "must be a number of seconds"),
        ([], "at least one audio file"),
    ],
)
def test_bad_hop_or_no_files_exit_2_with_one_line(tiny_run, songs, tmp_path, args, fragment):
    args = [a.format(song=songs[0]) for a in args]
    result = run("embed", tiny_run, *args, "--out", tmp_path / "emb.npz")
    assert result.exit_code == 2, result.output
    lines = nonblank_lines(result.stderr)
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_a_folder_that_is_not_a_run_exits_2(songs, tmp_path):
    result = run("embed", tmp_path, songs[0], "--out", tmp_path / "emb.npz")
    assert result.exit_code == 2 and "not a run folder" in result.stderr


def test_load_encoder_takes_a_run_folder_or_its_encoder_file(tiny_run, tmp_path):
    by_folder, by_file = load_encoder(tiny_run), load_encoder(tiny_run / "encoder.keras")
    assert (by_folder.sample_rate, by_folder.chunk_samples, by_folder.embedding_dim) == (16000, 800, 16)
    assert by_file.path == by_folder.path == tiny_run / "encoder.keras"
    with pytest.raises(InputError, match="no run folder or encoder file"):
        load_encoder(tmp_path / "nowhere")


def test_encoder_refuses_float_frames_it_would_truncate(tiny_run):
    with pytest.raises(ValueError, match="int16"):
        load_encoder(tiny_run).embed(np.full((2, CHUNK_SAMPLES), 0.5, dtype=np.float32))


def test_frame_drops_the_last_partial_frame():
    signal = np.arange(9)
    np.testing.assert_array_equal(frame(signal, chunk_samples=4, hop_samples=3), [[0, 1, 2, 3], [3, 4, 5, 6]])
    assert frame(np.zeros((2, 10)), chunk_samples=4, hop_samples=2).shape == (2, 4, 4)
