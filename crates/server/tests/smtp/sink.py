"""A real SMTP server for the tests (Python's standard smtpd, Debian 12's
Python 3.11): prints its port, then writes each message received to the
directory given, one file per message."""
import asyncore
import os
import smtpd
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)


class Sink(smtpd.SMTPServer):
    count = 0

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        Sink.count += 1
        path = os.path.join(sys.argv[1], f"{Sink.count:04}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Rcpt: " + ",".join(rcpttos).encode() + b"\r\n" + data)
        os.rename(path + ".tmp", path)


server = Sink(("127.0.0.1", 0), None, decode_data=False)
print(server.socket.getsockname()[1], flush=True)
asyncore.loop()
