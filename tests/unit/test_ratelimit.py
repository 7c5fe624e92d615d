"""ratelimit.py: one token bucket per kind shared by every thread, so N workers together get
the rate, not N times it; the reader and storage wrappers pay for exactly what passes."""
import io
import threading
import time

import pytest

from walrus import config, ratelimit
from walrus.errors import ConfigError

MB = ratelimit.MB


class FakeClock(object):
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_paces_to_the_rate_after_a_small_burst():
    clock = FakeClock()
    limit = ratelimit.TokenBucket(2, clock=clock, sleep=clock.sleep)  # 2 MB/s
    for _i in range(20):
        limit.take(MB // 2)  # 10 MB in all
    # 10 MB at 2 MB/s is 5 s, less the quarter second of burst the bucket starts with.
    assert clock.now - 100.0 == pytest.approx(5.0 - ratelimit.BURST_SECONDS, abs=0.01)


def test_idle_time_buys_at_most_the_burst():
    clock = FakeClock()
    limit = ratelimit.TokenBucket(1, clock=clock, sleep=clock.sleep)
    clock.now += 3600  # an hour idle
    limit.take(2 * MB)
    assert sum(clock.slept) == pytest.approx(2.0 - ratelimit.BURST_SECONDS, abs=0.01)


def test_threads_share_one_rate():
    """Four threads each moving 0.5 MB through a 4 MB/s bucket take about 0.5 s together, not 1/8 s."""
    limit = ratelimit.TokenBucket(4)
    started = time.monotonic()

    def work():
        for _i in range(10):
            limit.take(50 * 1000)
    threads = [threading.Thread(target=work) for _i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert 2.0 / 4 - ratelimit.BURST_SECONDS - 0.05 <= elapsed < 3.0


def test_bucket_is_shared_per_kind_and_none_without_a_limit():
    assert ratelimit.bucket("read", None) is None and ratelimit.bucket("read", 0) is None
    first = ratelimit.bucket("upload", 3)
    assert ratelimit.bucket("upload", 3) is first
    assert ratelimit.bucket("download", 3) is not first
    assert ratelimit.bucket("upload", 5).rate == 5 * MB


def test_reader_and_storage_pay_for_what_passes():
    clock = FakeClock()
    limit = ratelimit.TokenBucket(1, clock=clock, sleep=clock.sleep)
    limit._tokens = 0
    handle = ratelimit.reader(io.BytesIO(b"x" * 300000), limit)
    assert handle.read(1000000) == b"x" * 300000
    assert sum(clock.slept) == pytest.approx(0.3)
    handle.seek(0)
    assert handle.read(5) == b"xxxxx"

    class Store(object):
        def __init__(self):
            self.stored = b""

        def put_stream(self, key, chunks):
            self.stored = b"".join(chunks)
            return len(self.stored)

        def get_stream(self, key):
            return iter([b"a" * 500000, b"b" * 500000])

        def describe(self):
            return "store"

    settings = config.Settings({"max_upload_rate": 1, "max_download_rate": None}, {})
    inner = Store()
    assert ratelimit.limit_storage(inner, settings, download=True) is inner  # no download limit set
    wrapped = ratelimit.limit_storage(inner, settings, upload=True, download=True)
    wrapped._upload = limit
    clock.slept[:] = []
    assert wrapped.put_stream("k", iter([b"1" * 200000, b"2" * 200000])) == 400000
    assert sum(clock.slept) == pytest.approx(0.4)
    assert b"".join(wrapped.get_stream("k")) == b"a" * 500000 + b"b" * 500000  # unlimited download
    assert wrapped.describe() == "store"


def test_rate_settings_from_env_and_file(tmp_path):
    path = tmp_path / "walrus.conf"
    path.write_text("max_read_rate = 2.5\nmax_upload_rate = 10\n")
    settings = config.load({"config": str(path)}, environ={"WALRUS_MAX_DOWNLOAD_RATE": "0.5"})
    assert (settings.max_read_rate, settings.max_upload_rate, settings.max_download_rate) == (2.5, 10.0, 0.5)
    for bad in ("fast", "-1", "nan", "inf"):
        with pytest.raises(ConfigError):
            config.load({"config": str(path)}, environ={"WALRUS_MAX_READ_RATE": bad})
