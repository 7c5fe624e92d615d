import os

import pytest

from walrus import config
from walrus.errors import ConfigError


def write(tmp_path, text, mode=0o600):
    path = tmp_path / "walrus.conf"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_precedence_flag_env_file(tmp_path):
    path = write(tmp_path, "repo = /from/file\ncompression = zstd\nlookahead = 3\n# comment\n")
    env = {"WALRUS_CONFIG": path, "WALRUS_COMPRESSION": "none"}
    settings = config.load({"repo": "/from/flag"}, environ=env)
    assert settings.repo == "/from/flag" and settings.source("repo") == "flag"
    assert settings.compression == "none" and settings.source("compression") == "env WALRUS_COMPRESSION"
    assert settings.lookahead == 3 and settings.source("lookahead") == "config " + path
    assert settings.prefetch == 8 and settings.source("prefetch") == "default"


def test_aws_environment_beats_config_file(tmp_path):
    path = write(tmp_path, "aws_access_key_id = FILEKEY\naws_secret_access_key = 'filesecret'\naws_region = eu-west-1\n")
    settings = config.load({"config": path}, environ={"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_DEFAULT_REGION": "us-east-2"})
    assert settings.aws_access_key_id == "ENVKEY"
    assert settings.aws_secret_access_key == "filesecret"
    assert settings.aws_region == "us-east-2"
    assert settings.redacted()["aws_secret_access_key"] == "********"


def test_secret_in_group_readable_file_is_refused(tmp_path):
    path = write(tmp_path, "aws_secret_access_key = s\n", mode=0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        config.load({"config": path}, environ={})
    # without a secret, a readable file is fine
    path = write(tmp_path, "repo = /x\n", mode=0o644)
    assert config.load({"config": path}, environ={}).repo == "/x"


@pytest.mark.parametrize("text,match", [
    ("colour = blue\n", "unknown setting 'colour'"),
    ("lookahead = many\n", "not an integer"),
    ("s3_conditional_writes = maybe\n", "not a boolean"),
    ("just words\n", "expected 'key = value'"),
    ("compression = gzip\n", "use lz4, zstd or none"),
])
def test_bad_config_is_reported_with_location(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        config.load({"config": write(tmp_path, text)}, environ={})


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load({"config": str(tmp_path / "nope")}, environ={})


def test_inline_comments_end_unquoted_values(tmp_path):
    path = write(tmp_path, "repo = /srv/walrus  # the backup disk\nlookahead = 4\t# fewer\ns3_sse = 'a #b'\n")
    settings = config.load({"config": path}, environ={})
    assert (settings.repo, settings.lookahead, settings.s3_sse) == ("/srv/walrus", 4, "a #b")
