"""campaigns.conf: each CAMPAIGNS_* setting has one default, used when it is unset or None."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from campaigns import conf

ROOT = Path(__file__).resolve().parents[2]


def test_a_setting_left_none_by_the_environment_takes_its_default(settings):
    settings.CAMPAIGNS_BATCH_SIZE = None
    settings.CAMPAIGNS_SENDING_LEASE_SECONDS = None
    assert conf.batch_size() == conf.DEFAULTS["CAMPAIGNS_BATCH_SIZE"] == 500
    assert conf.sending_lease() == dt.timedelta(seconds=60)


def test_a_configured_setting_wins(settings):
    settings.CAMPAIGNS_BATCH_SIZE = 40
    settings.CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS = 60
    assert conf.batch_size() == 40
    assert conf.max_task_delay() == dt.timedelta(minutes=1)


def test_the_environment_reaches_the_getters_and_unset_variables_leave_none():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from campaigns import conf; "
        "print(settings.CAMPAIGNS_SEND_CHUNK_SIZE, conf.send_chunk_size(), conf.batch_size())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", CAMPAIGNS_BATCH_SIZE="77")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["None", "100", "77"]
