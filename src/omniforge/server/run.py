"""Run the server: `serve(settings)` starts uvicorn on settings.host:port, preloads
settings.preload, and prints the URL and the models it serves once it is listening.

    python -m omniforge.server.run [--host H] [--port P] [--config FILE]
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from collections.abc import Sequence

import uvicorn

from ..config import Settings, load_settings
from ..errors import InvalidRequestError, OmniforgeError
from ..governance.keys import store_has_keys
from ..service import Service
from .app import create_app

log = logging.getLogger("omniforge.server")


def _banner(settings: Settings, service: Service) -> str:
    host = settings.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{settings.port}"
    lines = [f"omniforge serving on {url}  (OpenAI base_url: {url}/v1)"]
    if settings.api_keys or store_has_keys(settings.home, active_only=False):
        lines.append("  auth: bearer API key required (settings.api_keys or `omniforge keys`)")
    lines.append("  models:")
    for spec in service.models():
        aliases = f"  aliases: {', '.join(spec.aliases)}" if spec.aliases else ""
        refused = "" if spec.accepted(settings.accept_licenses) else \
            f"  (not served: accept its terms with accept_licenses={spec.terms})"
        lines.append(f"    {spec.id:<22} {spec.modality:<14} {spec.license}{aliases}{refused}")
    defaults = (f"chat={settings.default_chat_model} speech={settings.default_speech_model} "
                f"transcription={settings.default_transcription_model} "
                f"embedding={settings.default_embedding_model} image={settings.default_image_model} "
                f"video={settings.default_video_model} vision={settings.default_vision_model}")
    lines.append(f"  OpenAI names resolve to the defaults: {defaults}")
    return "\n".join(lines)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; anything else (0.0.0.0, a LAN address, a name) is reachable from outside."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to serve beyond this machine with no API key: anyone on the network could use it."""
    if is_loopback(settings.host) or settings.api_keys or store_has_keys(settings.home):
        return
    raise InvalidRequestError(
        f"refusing to serve on {settings.host or '0.0.0.0'} without an API key: set api_keys (OMNIFORGE_API_KEYS) "
        "or create one with `omniforge keys create NAME`, or bind to 127.0.0.1", param="host")


class _Server(uvicorn.Server):
    """uvicorn's server, printing the banner once the socket is listening."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            print(self._banner, flush=True)


def serve(settings: Settings | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), then unload the models."""
    settings = settings or load_settings()
    level = settings.log_level.upper()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("omniforge").setLevel(level)
    check_exposure(settings)
    service = Service(settings)
    try:
        for model_id in settings.preload:  # a typo fails here in one line, not in the app's startup
            service.model(model_id)
        app = create_app(service, settings)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=5,
        )
        _Server(config, _banner(settings, service)).run()
    finally:
        service.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m omniforge.server.run", description="Run omniforge's OpenAI-compatible HTTP server."
    )
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--config", help="TOML settings file")
    args = parser.parse_args(argv)
    try:
        serve(load_settings(args.config, host=args.host, port=args.port))
    except OmniforgeError as exc:  # a bad setting or preload id: say which, no traceback
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
