"""Cronium runtime helpers for python scripts: ``import cronium``.

The runner that started this script puts this module on ``PYTHONPATH`` and
answers calls on the Unix socket named by ``CRONIUM_HELPER_SOCKET``: one JSON
request line per connection, one JSON answer line back. Standard library
only; python 3.9 or newer. See docs/helpers.md.
"""

import json
import os
import socket

__all__ = [
    "ABSENT",
    "ANY",
    "HelperError",
    "context",
    "delete_variable",
    "get_variable",
    "input",
    "output",
    "set_condition",
    "set_variable",
]

# Largest request the runner accepts (its frame size less room for the call id).
_MAX_REQUEST = 2 * 1024 * 1024 - 1024
# Longest path connect(2) takes for a Unix socket.
_MAX_SOCKET_PATH = 107


class HelperError(Exception):
    """A helper call failed. ``code`` is one of: invalid, too_large, limit,
    not_found, conflict, refused, unavailable, internal."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class _Marker:
    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return "cronium." + self._name


#: ``set_variable(..., expect=ANY)``: write whatever the current value is.
ANY = _Marker("ANY")
#: ``set_variable(..., expect=ABSENT)``: write only if the variable does not exist.
ABSENT = _Marker("ABSENT")


def _call(request):
    path = os.environ.get("CRONIUM_HELPER_SOCKET")
    if not path:
        raise HelperError(
            "unavailable",
            "not inside a Cronium run (CRONIUM_HELPER_SOCKET is not set)",
        )
    try:
        line = json.dumps(request, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise HelperError("invalid", "the value is not JSON: %s" % e) from None
    if len(line) > _MAX_REQUEST:
        raise HelperError(
            "too_large",
            "the request is %d bytes, more than the %d a helper call carries"
            % (len(line), _MAX_REQUEST),
        )
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise HelperError(
            "unavailable",
            "the helper socket path is longer than a Unix socket allows: "
            "run with a shorter --workdir",
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
            sock.sendall(line + b"\n")
            answer = sock.makefile("rb").readline()
        except OSError as e:
            raise HelperError(
                "unavailable", "cannot reach the runner at %s: %s" % (path, e)
            ) from None
    finally:
        sock.close()
    if not answer:
        raise HelperError("unavailable", "the runner closed the connection without an answer")
    reply = json.loads(answer)
    if reply.get("ok"):
        return reply.get("value")
    raise HelperError(reply.get("error", "internal"), reply.get("message", ""))


def _key(key):
    if not isinstance(key, str):
        raise HelperError("invalid", "a variable key must be a string, not %s" % type(key).__name__)
    return key


def input():  # noqa: A001 - the name the helpers use in every language
    """The run's input: the JSON it was started with, or the previous event's
    output in a chain; ``None`` when there is none."""
    return _call({"op": "input"})


def output(value):
    """Sets this attempt's output (any JSON value, at most 1 MiB), replacing
    an earlier one."""
    _call({"op": "output", "value": value})


def get_variable(key, default=None):
    """The variable's value, or ``default`` if it does not exist."""
    try:
        return _call({"op": "var.get", "key": _key(key)})
    except HelperError as e:
        if e.code == "not_found":
            return default
        raise


def set_variable(key, value, secret=None, expect=ANY):
    """Writes a variable (any JSON value, at most 64 KiB).

    ``secret``: True or False to change its secrecy, None to keep it (a new
    variable is not secret). ``expect``: ``ANY`` (default), ``ABSENT`` (the
    variable must not exist yet) or a value the current one must equal.
    Returns True, or False when ``expect`` did not hold (nothing written).
    """
    request = {"op": "var.set", "key": _key(key), "value": value}
    if secret is not None:
        if not isinstance(secret, bool):
            raise HelperError("invalid", "secret must be True, False or None")
        request["secret"] = secret
    if expect is ABSENT:
        request["expect"] = {"absent": True}
    elif expect is not ANY:
        request["expect"] = {"value": expect}
    try:
        _call(request)
    except HelperError as e:
        if e.code == "conflict":
            return False
        raise
    return True


def delete_variable(key):
    """Deletes a variable. Returns True if it existed."""
    try:
        _call({"op": "var.delete", "key": _key(key)})
    except HelperError as e:
        if e.code == "not_found":
            return False
        raise
    return True


def set_condition(value):
    """Sets the run's condition (it is False unless set)."""
    if not isinstance(value, bool):
        raise HelperError("invalid", "the condition must be True or False")
    _call({"op": "condition", "value": value})


def context():
    """Facts about the run: jobId, attempt, event, trigger, server."""
    return _call({"op": "context"})
