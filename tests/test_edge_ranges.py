"""Range checks at the edge (issue 21 §4): click checks every numeric flag; the library names its parameters."""

import pytest

from audiosort.audit import audit
from audiosort.config import load_config
from audiosort.errors import InputError
from conftest import assert_one_line_error, run


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["eval", "RUN", "--puzzles", "0"], "'--puzzles': 0 is not in the range x>=1"),
        (["eval", "RUN", "--n-chunks", "1"], "'--n-chunks': 1 is not in the range x>=2"),
        (["audit", "--config", "C", "--steps", "-3"], "'--steps': -3 is not in the range x>=1"),
        (["sweep", "--config", "C", "--jobs", "0"], "'--jobs': 0 is not in the range x>=1"),
        (["listen", "RUN", "A", "--out", "O", "--start", "-1"], "'--start': -1.0 is not in the range x>=0"),
        (["prepare", "--synthetic", "noise", "--out", "O", "--pad-max-seconds", "inf"], "'--pad-max-seconds': 'inf' is not a finite"),
        (["prepare", "--synthetic", "noise", "--out", "O", "--min-rms", "-0.1"], "'--min-rms': -0.1 is not in the range x>=0"),
        (["prepare", "--synthetic", "noise", "--out", "O", "--track-seconds", "nan"], "'--track-seconds': 'nan' is not a finite"),
    ],
)
def test_a_flag_out_of_range_is_one_line_before_anything_runs(tmp_path, args, fragment):
    result = run(*[str(tmp_path / arg) if arg in ("RUN", "C", "A", "O") else arg for arg in args])
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("budget, fragment", [({"steps": 0}, "steps = 0 must"), ({"n_puzzles": -1}, "n_puzzles = -1 must")])
def test_library_errors_name_the_parameter_not_the_flag(budget, fragment):
    with pytest.raises(InputError, match=fragment) as error:
        audit(load_config(None), sanity=("noise",), **budget)
    assert "--" not in str(error.value)
