"""Loading the cluster cookie from the environment or a file."""

import logging
import pickle

import pytest

from eco.plan import Secret
from eco.runtime.secrets import Cookie, SecretError, load_cookie

VALUE = "s3cret-cookie-value-0123456789abcdef"


def test_from_env():
    cookie = load_cookie(Secret(source="env", name="ECO_COOKIE"), environ={"ECO_COOKIE": VALUE + "\n"})
    assert cookie == Cookie(VALUE)


def test_from_file(tmp_path):
    path = tmp_path / "cookie"
    path.write_text(VALUE + "\n")
    assert load_cookie(Secret(source="file", name=str(path))) == Cookie(VALUE)


@pytest.mark.parametrize(
    "environ, message",
    [({}, "ECO_COOKIE is not set"), ({"ECO_COOKIE": "  "}, "ECO_COOKIE is empty"), ({"ECO_COOKIE": "short"}, "too short")],
)
def test_env_errors_name_the_variable_not_the_value(environ, message):
    with pytest.raises(SecretError, match=message) as info:
        load_cookie(Secret(source="env", name="ECO_COOKIE"), environ=environ)
    assert "short" not in str(info.value).replace("too short", "")


def test_file_errors(tmp_path):
    with pytest.raises(SecretError, match="does not exist"):
        load_cookie(Secret(source="file", name=str(tmp_path / "missing")))
    with pytest.raises(SecretError, match="is a directory"):
        load_cookie(Secret(source="file", name=str(tmp_path)))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        load_cookie(Secret(source="file", name=str(tmp_path / "empty")))


def test_cookie_is_redacted_everywhere(caplog):
    cookie = Cookie(VALUE)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("eco.transport").info("cookie %s %r", cookie, cookie)
    assert VALUE not in caplog.text and VALUE not in repr(cookie) and VALUE not in f"{cookie}"
    with pytest.raises(TypeError):
        pickle.dumps(cookie)


def test_generated_cookies_are_distinct_and_usable():
    a, b = Cookie.generate(), Cookie.generate()
    assert a != b and len(a.reveal()) == 64
    assert a.mac(b"m") == Cookie(a.reveal()).mac(b"m") != b.mac(b"m")
