# An SMTP receiver for Cronium's tests (crates/exec/src/testing/smtp_sink.rs):
# aiosmtpd on a loopback port, plain, STARTTLS or implicit TLS, with AUTH
# PLAIN/LOGIN when a user is given. Every DATA is written to the log as one
# JSON line (envelope, raw message, TLS, user, the answer given, and the
# headers and body as Python's own email parser reads them); the answer to
# the n-th DATA is the n-th of --answers, then the last one.
import argparse
import asyncio
import email
import email.policy
import json
import logging
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--user")
p.add_argument("--password")
p.add_argument("--log", required=True)
p.add_argument("--answers", default="250 2.0.0 Ok: queued as CRONIUM1")
args = p.parse_args()
# A failed handshake is what some tests make happen; aiosmtpd's traceback
# and deprecation notes would only clutter their output.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
warnings.simplefilter("ignore")
answers = args.answers.split("|")
lock = threading.Lock()
count = [0]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            n = count[0]
            count[0] += 1
        answer = answers[min(n, len(answers) - 1)]
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        record = {
            "mailFrom": envelope.mail_from,
            "rcptTos": envelope.rcpt_tos,
            "raw": envelope.original_content.decode("utf-8", "replace"),
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "user": session.auth_data.login.decode() if session.authenticated else None,
            "answer": answer,
            "headers": [[k, str(v)] for k, v in message.items()],
            "body": body.get_content().replace("\r\n", "\n").rstrip("\n") + "\n" if body is not None else None,
        }
        with lock, open(args.log, "a") as log:
            log.write(json.dumps(record) + "\n")
        return answer


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == args.user
        and auth_data.password.decode() == args.password
    )
    return AuthResult(success=ok, auth_data=auth_data)


context = None
if args.mode != "plain":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

kwargs = dict(hostname="127.0.0.1", port=args.port, decode_data=False)
if args.user:
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; implicit
    # TLS is encrypted from the start anyway.
    kwargs.update(authenticator=authenticate, auth_require_tls=args.mode == "starttls")
if args.mode == "starttls":
    kwargs.update(tls_context=context, require_starttls=True)
elif args.mode == "tls":
    kwargs.update(ssl_context=context)
controller = Controller(Handler(), **kwargs)
controller.start()
print("ready", flush=True)
# Until the test closes stdin (or dies).
sys.stdin.read()
controller.stop()
