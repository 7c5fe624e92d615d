"""Rate limits are behaviour, not benchmarks: with a limit of N MB/s, moving S bytes takes at
least about S/N seconds, with several parallel workers (one bucket for all of them). The
margins are wide (70 % of S/N) so a busy machine cannot make these flaky; a per-worker bucket
(twice the rate or more with --jobs 4 and at least two parts) would fail them."""
import os
import time

from conftest import walrus
from test_backup_fetch import backup_push

MB = 1000 * 1000


def _timed(func, *args, **kwargs):
    started = time.monotonic()
    result = func(*args, **kwargs)
    return result, time.monotonic() - started


def test_read_upload_and_download_limits(cluster_factory, fs_repo, workdir):
    primary = cluster_factory(fs_repo)
    primary.psql("create table filler(v text); insert into filler select md5(g::text) from generate_series(1, 80000) g")
    env = fs_repo.full_env()

    free, free_seconds = _timed(backup_push, primary, env, "--name", "free", "--jobs", "4", "--part-size-mb", "16")
    size = free["raw_size"]
    assert free["parts"] >= 2 and size > 20 * MB, free

    read_rate = size / MB / 4.0  # about 4 s for the whole data directory
    limited, seconds = _timed(backup_push, primary, env, "--name", "read-limited", "--jobs", "4",
                              "--part-size-mb", "16", "--max-read-rate", "%.3f" % read_rate)
    assert limited["parts"] >= 2
    assert seconds >= 0.7 * limited["raw_size"] / (read_rate * MB), (seconds, limited["raw_size"], read_rate)
    assert seconds < 4 * 4.0 + free_seconds + 30  # and it still finishes

    # The upload limit counts what is sent: uncompressed here, so about the data directory's size.
    upload_rate = size / MB / 4.0
    sent, seconds = _timed(backup_push, primary, env, "--name", "upload-limited", "--jobs", "4", "--part-size-mb", "16",
                           "--compression", "none", "--max-upload-rate", "%.3f" % upload_rate)
    assert seconds >= 0.7 * sent["stored_size"] / (upload_rate * MB), (seconds, sent["stored_size"], upload_rate)

    # The same limit from the environment, for backup-fetch's downloads of that backup's parts.
    target = os.path.join(workdir, "restored")
    res, seconds = _timed(walrus, "backup-fetch", "upload-limited", target, "--jobs", "4",
                          env=dict(env, WALRUS_MAX_DOWNLOAD_RATE="%.3f" % upload_rate), timeout=300)
    assert res.returncode == 0, res.stderr
    assert seconds >= 0.7 * sent["stored_size"] / (upload_rate * MB), (seconds, sent["stored_size"], upload_rate)
