"""The operator's answer to ToolHive's validating webhook, over HTTPS: tools/call of a tool the allowlist
does not allow right now is denied (gateways/toolhive_webhook.py has the protocol and the decision).

One server answers every allowlist: ToolHive calls `https://HOST:PORT/toolhive/<namespace>/<allowlist>`
(an MCPWebhookConfig's `url`, see deploy/samples/), and the request's `context.server_name` is the
source's `as`. Answers come from `lookup(namespace, allowlist, server)`, the engine's current allowed
tools, so a drifted tool is denied as soon as the sync that found it completes; no gateway reloads.

The certificate is the admission webhook's (--webhook-cert-dir: tls.crt, tls.key, the layout of a
cert-manager Secret), and it is re-read when those files change, as is the HMAC secret
(--toolhive-webhook-hmac-secret-file): a renewed certificate serves new connections without a restart.
With an HMAC secret, an unsigned, stale or wrongly signed call is answered 422, which ToolHive always
treats as a denial, whatever its failurePolicy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from ..config import OperatorConfig
from ..gateways.toolhive_webhook import (
    MAX_BODY_BYTES,
    InvalidWebhookRequest,
    decide,
    parse_request,
    verify_signature,
)

logger = logging.getLogger(__name__)

PATH_PREFIX = "/toolhive"
RELOAD_INTERVAL_SECONDS = 10.0

# (namespace, allowlist, server name) -> the tools allowed for it right now (name -> schemaHash), or None
# when there is no such allowlist or it has no source of that name.
Lookup = Callable[[str, str, str], Mapping[str, str] | None]


def path_for(namespace: str, allowlist: str) -> str:
    """The URL path ToolHive calls for one allowlist (an MCPWebhookConfig's url ends with it)."""
    return f"{PATH_PREFIX}/{namespace}/{allowlist}"


class ToolHiveWebhookServer:
    """An aiohttp HTTPS server for ToolHive's validating webhook; `start()`, then `stop()`."""

    def __init__(self, lookup: Lookup, *, cert_dir: str | Path, address: str = "0.0.0.0", port: int = 0,
                 hmac_secret_file: str | Path | None = None, reload_interval: float = RELOAD_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._lookup = lookup
        directory = Path(cert_dir)
        self._cert, self._key = directory / "tls.crt", directory / "tls.key"
        self._secret_file = Path(hmac_secret_file) if hmac_secret_file else None
        self._secret: bytes | None = None
        self.address, self.port = address, port
        self._reload_interval = reload_interval
        self._clock = clock
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._digest = ""
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------- files

    def _files(self) -> list[Path]:
        return [self._cert, self._key] + ([self._secret_file] if self._secret_file else [])

    def _load(self) -> None:
        """(Re)load the certificate into the live SSL context (new connections get it) and the secret."""
        missing = [str(path) for path in self._files() if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"the ToolHive webhook needs {', '.join(missing)}")
        self._context.load_cert_chain(str(self._cert), str(self._key))
        if self._secret_file is not None:
            secret = self._secret_file.read_bytes()
            if not secret:
                raise ValueError(f"the HMAC secret in {self._secret_file} is empty")
            self._secret = secret
        self._digest = self._files_digest()

    def _files_digest(self) -> str:
        hasher = hashlib.sha256()
        for path in self._files():
            with contextlib.suppress(OSError):
                hasher.update(path.read_bytes())
        return hasher.hexdigest()

    async def _watch_files(self) -> None:
        """Mounted Secrets change without filesystem events: re-read them every few seconds."""
        while True:
            await asyncio.sleep(self._reload_interval)
            if self._files_digest() == self._digest:
                continue
            try:
                self._load()
                logger.info("ToolHive webhook: certificate and HMAC secret re-read")
            except (OSError, ValueError, ssl.SSLError) as error:     # half-written files: try again later
                logger.warning("ToolHive webhook: keeping the previous certificate and secret: %s", error)

    # ------------------------------------------------------------------------- serving

    async def start(self) -> None:
        self._load()
        app = web.Application(client_max_size=MAX_BODY_BYTES + 4096)
        app.add_routes([web.post(PATH_PREFIX + "/{namespace}/{allowlist}", self._handle)])
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.address else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.address, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            await self._runner.cleanup()
            raise
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])         # the one the OS chose, for port 0
        await web.SockSite(self._runner, sock, ssl_context=self._context).start()
        self._watcher = asyncio.create_task(self._watch_files(), name="toolhive-webhook-files")
        logger.info("ToolHive validating webhook on https://%s:%d%s/<namespace>/<allowlist>%s", self.address,
                    self.port, PATH_PREFIX, ", HMAC signatures required" if self._secret_file else "")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        namespace, allowlist = request.match_info["namespace"], request.match_info["allowlist"]
        body = await request.read()
        try:
            if self._secret is not None:
                verify_signature(self._secret, request.headers, body, self._clock())
            call = parse_request(body)
        except InvalidWebhookRequest as refusal:
            logger.warning("ToolHive webhook %s/%s: refused a call from %s: %s", namespace, allowlist,
                           request.remote, refusal.message)
            return web.json_response(refusal.body(), status=422)
        server = call.context.server_name
        try:
            allowed = self._lookup(namespace, allowlist, server)
        except Exception:       # the engine failed to answer: deny tool calls rather than guess
            logger.exception("ToolHive webhook %s/%s: looking up %r failed", namespace, allowlist, server)
            allowed = None
        answer = decide(call, allowed, allowlist=f"{namespace}/{allowlist}")
        if not answer.allowed:
            logger.info("ToolHive webhook %s/%s: denied for %r: %s", namespace, allowlist, server, answer.message)
        return web.json_response(answer.body())


def from_config(config: OperatorConfig, lookup: Lookup) -> ToolHiveWebhookServer | None:
    """The server --toolhive-webhook-port asks for (None when it is off), answering from `lookup`.
    Start it at the operator's start-up and stop it at its cleanup."""
    if not config.toolhive_webhook_port:
        return None
    return ToolHiveWebhookServer(lookup, cert_dir=config.webhook_cert_dir, address=config.webhook_address,
                                 port=config.toolhive_webhook_port,
                                 hmac_secret_file=config.toolhive_webhook_hmac_secret_file)
