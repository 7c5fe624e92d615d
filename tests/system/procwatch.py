"""Watch the argument lists of every process on the machine while something runs, for secrets.

A background thread reads /proc/<pid>/cmdline of all processes every few milliseconds; short-lived
processes can slip between two scans, so the watcher also records which commands it did see,
and a test asserts that it saw the ones it cares about (proof that it was looking)."""
import os
import threading


class ArgvWatcher(object):
    def __init__(self, needles, interval=0.02):
        self.needles = [n.encode() if isinstance(n, str) else n for n in needles]
        self.interval = interval
        self.leaks = []       # (pid, argv) holding a needle
        self.seen = set()     # every argv seen, as text
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as handle:
                        argv = handle.read()
                except OSError:
                    continue  # gone meanwhile, or not ours to read
                text = argv.replace(b"\0", b" ").decode("utf-8", "replace").strip()
                if text:
                    self.seen.add(text)
                if any(needle in argv for needle in self.needles):
                    self.leaks.append((pid, text))
            self.scans += 1
            self._stop.wait(self.interval)

    def saw(self, fragment):
        return any(fragment in argv for argv in self.seen)
