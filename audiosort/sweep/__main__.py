"""``python -m audiosort.sweep JOB.json``: one run of a sweep, in this process (see :func:`runner.run_job`)."""

import sys

from audiosort.sweep.runner import run_job

sys.exit(run_job(sys.argv[1]))
