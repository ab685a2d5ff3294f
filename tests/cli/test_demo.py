"""The reduced demo (`--quick`) end to end: a real suite in processes, the public API only."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from PIL import Image

from services.cli.suite_process import free_port_offset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.demo", "--quick", "--out", str(out),
         "--port-offset", str(free_port_offset())],
        capture_output=True, text=True, timeout=240, check=False)
    return done, out


def _status(stdout: str) -> dict[str, str]:
    assert "== summary" in stdout, stdout[-3000:]
    summary = stdout.split("== summary", 1)[1]
    rows = {}
    for line in summary.splitlines()[2:]:
        match = re.match(r"(.+?)\s{2,}(done|partial|unavailable|skipped|failed)\s", line + " ")
        if match:
            rows[match.group(1).strip()] = match.group(2)
    return rows


def test_loading_traits_and_insight_work_through_the_api(demo_run):
    done, _ = demo_run
    out = done.stdout
    assert "== summary" in out, done.stderr[-3000:]
    status = _status(out)
    assert status["Load the CDNOW log as users and purchase events"] == "done", out
    # The first 3000 customers' purchases, all stored.
    match = re.search(r"(\d+) purchases of 3000 customers", out)
    assert match and int(match.group(1)) > 3000
    assert re.search(rf"IngestEvents: {match.group(1)} stored, 0 already there, 0 rejected", out)
    assert status["RFM groups and lifecycle stages"] == "done"
    groups = dict(re.findall(r"^\s+(at_risk|hibernating|champions|lost)\s+(\d+)\s", out, re.MULTILINE))
    assert int(groups["at_risk"]) > 0 and int(groups["hibernating"]) > 0
    assert int(groups["champions"]) > 0
    assert status['Portrait insight: "at risk" against everyone'] == "done"
    assert re.search(r"GetInsight: \d+ of 3000 users", out)
    assert "TGI" in out


def test_the_whole_loop_reports_the_effect_and_writes_charts(demo_run):
    from services.cli.demo import CLICK_RATES

    done, out_dir = demo_run
    out = done.stdout
    assert "== summary" in out, done.stderr[-3000:]
    status = _status(out)
    assert len(status) == 9, status
    not_done = {step: s for step, s in status.items() if s != "done"}
    assert not not_done, out[-4000:]
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    assert "not offered by the running services" not in out
    # The win-back segment is the top 30% of the candidates by score, computed from the scores.
    candidates = int(re.search(r'rfm\("at_risk", "hibernating"\) -> (\d+) users', out).group(1))
    members = int(re.search(r"CreateSnapshot segments/\d+/snapshots/1: (\d+) members", out)
                  .group(1))
    assert abs(members - 0.3 * candidates) <= 0.02 * candidates + 2, (members, candidates)
    # Outcomes were reported with the service credential (not refused), per copy.
    assert re.search(r"ReportOutcomes for \d+ sends: \d+ delivered, \d+ opened, \d+ clicked\n",
                     out)
    # The copy with the highest simulated click rate wins the race, and the rest get it.
    best = max(CLICK_RATES, key=CLICK_RATES.get)
    assert re.search(rf"^   winner: {best} - (significant|deadline_fallback)", out, re.MULTILINE), out
    assert "RunTouch again (the rest get the winner)" in out
    # Every goal event of the audience was attributed to a message or to the control group.
    converting = int(re.search(r"(\d+) of \d+ audience members bought again", out).group(1))
    contacted, control = map(int, re.search(
        r"attributed conversions: (\d+) contacted, (\d+) in the control group", out).groups())
    assert converting > 0 and contacted + control == converting
    match = re.search(r"Uplift against the 10% control group: ([+-]\d+\.\d\d) points, 95% "
                      r"interval \[([+-]\d+\.\d\d), ([+-]\d+\.\d\d)\]", out)
    assert match, out[-3000:]
    uplift, low, high = map(float, match.groups())
    assert low <= uplift <= high
    for name in ("funnel.png", "copy_race.png", "uplift.png", "lift.png"):
        path = out_dir / name
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        with Image.open(path) as image:
            image.verify()  # checks every chunk's CRC through IEND
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 300 and image.size[1] >= 200
