"""A TLS + SASL front for the plain tansu broker, for end-to-end security tests.

Why: tansu 0.6.0 (the embedded broker) cannot serve a secured listener to aiokafka —
`--cert` and `--key` are mutually exclusive on its command line and with `--cert` alone the
listener still speaks plain TCP (a TLS ClientHello gets no answer); with `--authentication`
it offers no PLAIN mechanism (`NoSharedMechanism`) and only SCRAM users stored through the
Kafka protocol, which the same flag refuses before authentication (`NotAuthenticated`),
while the memory storage does not survive a restart. So this gate does what a secured
Kafka listener does, in front of a tansu that advertises the gate's address:

* TLS with the test CA's server certificate, optionally requiring a client certificate;
* SASL (KIP-43/KIP-152 handshake + SaslAuthenticate v0/v1) with PLAIN, SCRAM-SHA-256 and
  SCRAM-SHA-512 (RFC 5802 server side, stored keys only), answering a bad password with
  SASL_AUTHENTICATION_FAILED (58) as Kafka does;
* before authentication only ApiVersions is forwarded; anything else closes the
  connection and is counted in `refused`.

After authentication the connection is piped to tansu byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import ssl
import struct
import threading
from dataclasses import dataclass, field

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ERR_NONE, ERR_UNSUPPORTED_MECHANISM, ERR_ILLEGAL_SASL_STATE, ERR_AUTH_FAILED = 0, 33, 34, 58
HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _bytes(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


@dataclass
class ScramCredential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def create(cls, mechanism: str, password: str, iterations: int = 4096) -> "ScramCredential":
        h = HASHES[mechanism]
        salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac(h().name, password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", h).digest()
        return cls(salt, iterations, h(client_key).digest(),
                   hmac.new(salted, b"Server Key", h).digest())


@dataclass
class _Session:
    mechanism: str | None = None
    authenticated: bool = False
    user: str | None = None
    scram_state: dict = field(default_factory=dict)


class KafkaGate:
    def __init__(self, upstream_port: int, port: int, ssl_context: ssl.SSLContext | None = None,
                 users: dict[str, str] | None = None,
                 mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.ssl_context = ssl_context
        self.passwords = dict(users or {})
        self.sasl = users is not None
        self.mechanisms = mechanisms
        self.scram = {(u, m): ScramCredential.create(m, pw)
                      for u, pw in self.passwords.items() for m in HASHES}
        self.authenticated: list[tuple[str, str]] = []  # (user, mechanism) per connection
        self.failed: list[tuple[str | None, str | None]] = []
        self.refused = 0  # requests before authentication that were not ApiVersions
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> "KafkaGate":
        self._thread = threading.Thread(target=self._run, name="kafka-gate", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("kafka gate did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.ssl_context))
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)

    # -- one client connection --------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        session = _Session(authenticated=not self.sasl)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        pump = asyncio.ensure_future(self._pipe(up_reader, writer))
        try:
            while True:
                head = await reader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                frame = await reader.readexactly(size)
                api_key, api_version, corr = struct.unpack(">hhi", frame[:8])
                if not session.authenticated:
                    if api_key == SASL_HANDSHAKE:
                        writer.write(self._handshake(session, frame, corr))
                        await writer.drain()
                        continue
                    if api_key == SASL_AUTHENTICATE:
                        reply, ok = self._authenticate(session, frame, api_version, corr)
                        writer.write(reply)
                        await writer.drain()
                        if not ok:
                            break
                        continue
                    if api_key != API_VERSIONS:
                        self.refused += 1
                        break
                up_writer.write(head + frame)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            pump.cancel()
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            dst.close()

    @staticmethod
    def _header_end(frame: bytes) -> int:
        (client_len,) = struct.unpack(">h", frame[8:10])
        return 10 + max(client_len, 0)

    def _handshake(self, session: _Session, frame: bytes, corr: int) -> bytes:
        pos = self._header_end(frame)
        (n,) = struct.unpack(">h", frame[pos:pos + 2])
        mechanism = frame[pos + 2:pos + 2 + n].decode()
        error = ERR_NONE if mechanism in self.mechanisms else ERR_UNSUPPORTED_MECHANISM
        session.mechanism = mechanism if error == ERR_NONE else None
        body = struct.pack(">h", error) + struct.pack(">i", len(self.mechanisms))
        body += b"".join(_string(m) for m in self.mechanisms)
        return self._response(corr, body)

    def _authenticate(self, session: _Session, frame: bytes, version: int,
                      corr: int) -> tuple[bytes, bool]:
        pos = self._header_end(frame)
        (n,) = struct.unpack(">i", frame[pos:pos + 4])
        token = frame[pos + 4:pos + 4 + n]
        if session.mechanism is None:
            return self._auth_reply(corr, version, ERR_ILLEGAL_SASL_STATE, "no handshake", b""), False
        if session.mechanism == "PLAIN":
            try:
                _authz, user, password = token.decode().split("\0")
            except ValueError:
                user, password = None, None
            expected = self.passwords.get(user or "")
            if expected is not None and hmac.compare_digest(expected.encode(),
                                                            (password or "").encode()):
                return self._success(session, user, corr, version, b"")
            return self._failure(session, user, corr, version)
        return self._scram_step(session, token, corr, version)

    def _scram_step(self, session: _Session, token: bytes, corr: int,
                    version: int) -> tuple[bytes, bool]:
        mech = session.mechanism
        assert mech is not None
        h = HASHES[mech]
        state = session.scram_state
        text = token.decode()
        if "client_first_bare" not in state:
            # client-first: "n,,n=user,r=nonce"
            bare = text.split(",", 2)[2]
            attrs = dict(p.split("=", 1) for p in bare.split(","))
            user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            cred = self.scram.get((user, mech))
            if cred is None:  # unknown user: a fake credential, the proof fails later
                cred = ScramCredential.create(mech, os.urandom(8).hex())
                state["unknown"] = True
            nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
            server_first = (f"r={nonce},s={base64.b64encode(cred.salt).decode()},"
                            f"i={cred.iterations}")
            state.update(client_first_bare=bare, server_first=server_first, nonce=nonce,
                         cred=cred, user=user)
            return self._auth_reply(corr, version, ERR_NONE, None, server_first.encode()), True
        # client-final: "c=biws,r=nonce,p=proof"
        without_proof, _, proof_b64 = text.rpartition(",p=")
        attrs = dict(p.split("=", 1) for p in without_proof.split(","))
        cred: ScramCredential = state["cred"]
        auth_message = f"{state['client_first_bare']},{state['server_first']},{without_proof}"
        signature = hmac.new(cred.stored_key, auth_message.encode(), h).digest()
        proof = base64.b64decode(proof_b64)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        ok = (attrs.get("r") == state["nonce"] and not state.get("unknown")
              and hmac.compare_digest(h(client_key).digest(), cred.stored_key))
        if not ok:
            return self._failure(session, state["user"], corr, version)
        server_signature = hmac.new(cred.server_key, auth_message.encode(), h).digest()
        final = b"v=" + base64.b64encode(server_signature)
        return self._success(session, state["user"], corr, version, final)

    def _success(self, session: _Session, user: str, corr: int, version: int,
                 token: bytes) -> tuple[bytes, bool]:
        session.authenticated, session.user = True, user
        self.authenticated.append((user, session.mechanism or ""))
        return self._auth_reply(corr, version, ERR_NONE, None, token), True

    def _failure(self, session: _Session, user: str | None, corr: int,
                 version: int) -> tuple[bytes, bool]:
        self.failed.append((user, session.mechanism))
        message = ("Authentication failed during authentication due to invalid credentials "
                   f"with SASL mechanism {session.mechanism}")
        return self._auth_reply(corr, version, ERR_AUTH_FAILED, message, b""), False

    def _auth_reply(self, corr: int, version: int, error: int, message: str | None,
                    token: bytes) -> bytes:
        body = struct.pack(">h", error) + _string(message) + _bytes(token)
        if version >= 1:
            body += struct.pack(">q", 0 if error else 3_600_000)
        return self._response(corr, body)

    @staticmethod
    def _response(corr: int, body: bytes) -> bytes:
        payload = struct.pack(">i", corr) + body
        return struct.pack(">i", len(payload)) + payload


def server_context(cert: str, key: str, ca: str | None = None,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    return ctx
