"""Config loading is strict: typos and bad values fail loudly, naming the fix."""

import pytest

from audiosort.config import Config, dump_config, load_config
from audiosort.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_match_the_design():
    cfg = Config()
    assert (cfg.puzzle.n_chunks, cfg.puzzle.chunk_seconds, cfg.puzzle.pad_mode) == (3, 0.2, "per_gap")
    assert (cfg.model.encoder.type, cfg.model.sorter.type, cfg.model.sorter.normalization) == ("mlp", "mlp", "softmax")


def test_file_values_and_overrides_apply(tmp_path):
    path = write(tmp_path, "name: x\npuzzle: {n_chunks: 5}\nmodel: {encoder: {type: conv1d}}\n")
    cfg = load_config(path, ["train.learning_rate=1e-4", "model.encoder.embedding_dim=32", "puzzle.n_chunks=4"])
    assert cfg.name == "x"
    assert cfg.puzzle.n_chunks == 4
    assert cfg.model.encoder.type == "conv1d" and cfg.model.encoder.embedding_dim == 32
    assert cfg.train.learning_rate == pytest.approx(1e-4)


def test_unknown_key_names_closest_match(tmp_path):
    path = write(tmp_path, "puzzle:\n  pad_lengths: 0.01\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert "unknown key 'puzzle.pad_lengths'" in message and "did you mean 'pad_" in message
    assert str(path) in message and "\n" not in message


def test_key_in_the_wrong_section_points_to_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'train.learning_rate'"):
        load_config(write(tmp_path, "model: {learning_rate: 0.1}\n"))


def test_override_must_name_an_existing_key():
    with pytest.raises(ConfigError, match="did you mean 'chunk_seconds'"):
        load_config(None, ["puzzle.chunk_second=0.5"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["puzzle.n_chunks"])
    with pytest.raises(ConfigError, match="is a section"):
        load_config(None, ["model.encoder=mlp"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("puzzle.n_chunks=1", "n_chunks = 1 must be >= 2"),
        ("puzzle.n_chunks=2.5", "must be int"),
        ("puzzle.n_chunks=true", "must be int"),
        ("puzzle.pad_max_seconds=-0.1", "must be >= pad_min_seconds"),
        ("puzzle.pad_mode=random", "must be one of"),
        ("model.encoder.type=transformer", "must be one of"),
        ("train.batch_size=0", "must be > 0"),
        ("train.learning_rate=fast", "must be float"),
        ("train.jit_compile=maybe", "true, false or auto"),
    ],
)
def test_bad_values_are_errors_naming_the_value(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [override])


def test_ints_widen_to_float_but_not_the_reverse(tmp_path):
    cfg = load_config(write(tmp_path, "puzzle: {chunk_seconds: 1}\n"))
    assert cfg.puzzle.chunk_seconds == 1.0 and isinstance(cfg.puzzle.chunk_seconds, float)


def test_invalid_yaml_and_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "puzzle: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["puzzle.n_chunks=7", "train.jit_compile=false"])
    path = write(tmp_path, dump_config(cfg))
    assert load_config(path) == cfg
